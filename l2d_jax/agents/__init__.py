"""l2d_jax.agents."""
