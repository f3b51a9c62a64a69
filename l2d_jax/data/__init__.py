"""l2d_jax.data."""
