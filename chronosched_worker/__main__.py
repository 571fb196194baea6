"""`python -m chronosched_worker` runs the same worker as `chronosched worker`."""

import sys

from chronosched_worker.cli import main

sys.exit(main())
