"""eval.max_queries: one seeded subset of test queries for every model and baseline."""

import ml_collections
import numpy as np
import pytest

from genret_jax.decoding import config as decoding_config
from genret_jax.errors import ConfigError


def _eval(max_queries, seed=0):
  c = decoding_config.eval_config()
  c.max_queries, c.queries_seed = max_queries, seed
  return c


def test_subset_is_sorted_unique_deterministic():
  a = decoding_config.query_subset(1000, _eval(100))
  assert a.shape == (100,) and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
  np.testing.assert_array_equal(a, decoding_config.query_subset(1000, _eval(100)))
  assert not np.array_equal(a, decoding_config.query_subset(1000, _eval(100, seed=1)))


@pytest.mark.parametrize("limit", [0, 1000, 5000])
def test_subset_is_everything_when_not_limiting(limit):
  np.testing.assert_array_equal(decoding_config.query_subset(1000, _eval(limit)),
                                np.arange(1000))


def test_negative_limit_is_a_config_error():
  with pytest.raises(ConfigError, match="eval.max_queries"):
    decoding_config.validate(decoding_config.default_config(), _eval(-1))
  assert isinstance(_eval(3), ml_collections.ConfigDict)
