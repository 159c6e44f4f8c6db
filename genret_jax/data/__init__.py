"""Canonical data layer: Catalog, Events, readers, simulator, splits, prepared datasets."""

from genret_jax.data.schema import BEHAVIOURS, REC, SEARCH, Catalog, Events

__all__ = ["BEHAVIOURS", "REC", "SEARCH", "Catalog", "Events"]
