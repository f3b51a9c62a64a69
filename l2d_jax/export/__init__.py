"""l2d_jax.export."""
