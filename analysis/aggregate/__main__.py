"""``python -m analysis.aggregate``."""

import sys

from analysis.aggregate.cli import main

sys.exit(main())
