"""`python -m chronosched.cli`: the operator commands without the server package."""

import sys

from chronosched.cli import main

sys.exit(main())
