"""l2d_jax: Learning-to-Defer for extractive question answering, in JAX.

A rejector learns, per query, which agent of a pool (a cheap main model, bigger
experts, LLMs, humans) should answer, trading answer quality against the price
of consulting each agent.
"""

__version__ = "0.1.0"
