"""``python -m kubelite.cli.klctl``: klctl, as the console script runs it."""

import sys

from kubelite.cli.klctl import main

sys.exit(main())
