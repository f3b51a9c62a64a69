"""`python -m l2d_jax` runs the `l2d-jax` command line."""

from l2d_jax.cli import main

if __name__ == "__main__":
  raise SystemExit(main())
