"""`python -m deepvis_jax.cli ...` runs the `deepvis` command."""

import sys

from deepvis_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
