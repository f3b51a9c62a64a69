"""l2d_jax.evaluate."""
