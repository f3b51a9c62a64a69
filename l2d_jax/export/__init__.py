"""Exporting a trained rejector into one self-contained directory, and routing from it.

`bundle.export_rejector` writes the Hugging Face BERT classifier (`hf`), the
`jax.export` routing function (`stablehlo`, loaded by the standalone `loader`)
and the agents' costs; `route` is the `l2d-jax route` command that uses them.
"""
