"""`python -m arena_distill`: see arena_distill.cli."""

import sys

from arena_distill.cli import main

sys.exit(main())
