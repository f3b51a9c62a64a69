"""Batched inference over the mesh: row order, padding, and one compilation per model shape."""

from flax import nnx
import numpy as np

from l2d_jax.rejector import text
from l2d_jax.train import inference
from l2d_jax.train import rejector as rejector_lib


def _inputs(num_rows: int, length: int = 6) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  return {"input_ids": rng.integers(1, 50, (num_rows, length), dtype=np.int32),
          "attention_mask": np.ones((num_rows, length), np.int32),
          "token_type_ids": np.zeros((num_rows, length), np.int32)}


def test_new_weights_of_the_same_model_reuse_the_compiled_function():
  model = text.text_rejector("scratch", 3, vocab_size=50, num_layers=1, hidden_size=16,
                             num_heads=2, intermediate_size=32, max_seq_len=6)
  inputs = _inputs(11)
  before = inference._jitted_apply.cache_info()
  first = rejector_lib.predict_logits(model, inputs, batch_size=4)
  model.classifier.bias[...] = model.classifier.bias[...] + 1.0
  graphdef, state = nnx.split(model)  # as `Trainable.model()` rebuilds it
  model = nnx.merge(graphdef, state)
  second = rejector_lib.predict_logits(model, inputs, batch_size=4)
  after = inference._jitted_apply.cache_info()
  assert after.misses - before.misses <= 1 and after.hits - before.hits >= 1
  np.testing.assert_allclose(second, first + 1.0, atol=1e-5)  # the new weights were used
  model.eval()  # all 11 rows in order, the padded last batch cut back
  np.testing.assert_allclose(second, model(inputs), atol=1e-5)
