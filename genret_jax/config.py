"""The base experiment config. `configs/*.py` start from `get_base_config()`.

Each block's defaults live beside the code that reads them. ConfigDicts are
locked, so `--config.foo=1` for a key that does not exist is an error.
"""

import ml_collections

from genret_jax.data import config as data_config
from genret_jax.decoding import config as decoding_config
from genret_jax.ids import config as ids_config
from genret_jax.model import config as model_config
from genret_jax.tasks import config as tasks_config
from genret_jax.train import config as train_config


def get_base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = "joint"
  c.seed = 0
  c.scale = "cpu"             # smoke | cpu | paper
  c.data = data_config.default_config()
  c.vocab = tasks_config.vocab_config()
  c.tasks = tasks_config.default_config()
  c.ids = ids_config.default_config()
  c.model = model_config.default_config()
  c.mesh = model_config.mesh_config()
  c.train = train_config.default_config()
  c.decode = decoding_config.default_config()
  c.eval = decoding_config.eval_config()
  return c
