import sys

from training.compress.run import main

sys.exit(main())
