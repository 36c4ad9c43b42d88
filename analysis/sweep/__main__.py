"""``python -m analysis.sweep``."""

import sys

from analysis.sweep.cli import main

sys.exit(main())
