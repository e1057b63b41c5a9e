"""`python -m dataset_scripts ...`: see dataset_scripts/cli.py."""

import sys

from dataset_scripts.cli import main

if __name__ == "__main__":
    sys.exit(main())
