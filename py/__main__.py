"""``python -m grounded_inpaint``: see :mod:`grounded_inpaint.cli`."""

import sys

from .cli import main

sys.exit(main())
