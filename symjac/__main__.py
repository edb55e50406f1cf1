"""``python -m symjac``: see `symjac.cli`."""

import sys

from symjac.cli import main

sys.exit(main())
