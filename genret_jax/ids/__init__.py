"""Item identifiers: atomic, RQ-KMeans, RQ-VAE, GenSAR dual IDs."""

from genret_jax.ids.types import IdTable, ItemIdentifiers, atomic_ids

__all__ = ["IdTable", "ItemIdentifiers", "atomic_ids"]
