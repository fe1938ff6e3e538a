"""`python -m fleet` runs the command line."""

import sys

from fleet.cli import main

sys.exit(main())
