"""genret_jax.tasks: the vocabulary and the seqio Tasks / Mixtures (docs/tasks.md).

Importing this package is cheap (the config block imports it); `register`
imports seqio and TensorFlow on first use.
"""

from __future__ import annotations


def register(config, workdir: str, ids) -> dict:
  """Registers the Tasks and Mixtures of `{workdir}/prepared` (see tasks.registry.register)."""
  # seqio and TensorFlow load on first use: the config block imports this package.
  from genret_jax.tasks import registry  # pylint: disable=g-import-not-at-top
  return registry.register(config, workdir, ids)
