"""`python -m tools.shift`: runs the command line (tools/shift/cli.py)."""

import sys

from tools.shift.cli import main

sys.exit(main())
