"""`python -m tools.rollout`: the command line (cli.py)."""

import sys

from tools.rollout.cli import main

sys.exit(main())
