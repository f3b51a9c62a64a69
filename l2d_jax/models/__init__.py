"""l2d_jax.models."""
