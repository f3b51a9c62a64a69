"""The hashed dropout masks: their rate, independence, offsets, and the module's behaviour."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2d_jax.models import dropout as dropout_lib


def test_keep_mask_keeps_the_right_fraction_independently():
  shape = (8, 128, 256)
  first = np.asarray(dropout_lib.keep_mask(jnp.uint32(1), 0, shape, 0.1))
  second = np.asarray(dropout_lib.keep_mask(jnp.uint32(2), 0, shape, 0.1))
  assert abs(first.mean() - 0.9) < 0.003 and abs(second.mean() - 0.9) < 0.003
  # Independent masks agree on 0.9^2 + 0.1^2 = 82% of the elements; so do neighbours.
  assert abs((first == second).mean() - 0.82) < 0.003
  flat = first.reshape(-1)
  assert abs((flat[1:] == flat[:-1]).mean() - 0.82) < 0.003
  assert abs((flat[256:] == flat[:-256]).mean() - 0.82) < 0.003
  # A slice at an offset is the same stream.
  tail = np.asarray(dropout_lib.keep_mask(jnp.uint32(1), 128 * 256, (7, 128, 256), 0.1))
  np.testing.assert_array_equal(tail, first[1:])


def test_dropout_module_scales_kept_values_and_switches_off_in_eval():
  layer = dropout_lib.Dropout(0.25, rngs=nnx.Rngs(dropout=0))
  x = jnp.ones((64, 64))
  first, second = layer(x), layer(x)
  assert set(np.unique(np.asarray(first)).tolist()) == {0.0, float(np.float32(1 / 0.75))}
  assert abs(float((first == 0).mean()) - 0.25) < 0.03
  assert not np.array_equal(first, second)  # a fresh seed per call
  layer.eval()
  np.testing.assert_array_equal(layer(x), x)
  assert float((layer(x, deterministic=False) == 0).mean()) > 0.1


def test_dropout_module_has_the_state_of_nnx_dropout():
  """Same state tree as `nnx.Dropout`, so checkpoints written before the swap still restore."""
  ours = nnx.state(dropout_lib.Dropout(0.1, rngs=nnx.Rngs(dropout=3)))
  theirs = nnx.state(nnx.Dropout(0.1, rngs=nnx.Rngs(dropout=3)))
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  with pytest.raises(ValueError, match="dropout rate must be in"):
    dropout_lib.Dropout(1.0, rngs=nnx.Rngs(0))
