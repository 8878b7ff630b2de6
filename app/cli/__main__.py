"""`python -m app.cli`: the `vistune` command without the installed script."""

import sys

from app.cli import main

sys.exit(main())
