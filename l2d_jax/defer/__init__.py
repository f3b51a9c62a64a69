"""l2d_jax.defer."""
