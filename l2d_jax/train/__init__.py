"""l2d_jax.train."""
