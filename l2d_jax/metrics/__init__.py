"""l2d_jax.metrics."""
