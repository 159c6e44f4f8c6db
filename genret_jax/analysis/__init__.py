"""Analyses of trained models: H1 (popularity, `h1`), H2 (representations, `h2`), plots."""
