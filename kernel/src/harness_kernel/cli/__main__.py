"""``python -m harness_kernel.cli``: the same as the ``harness-kernel`` command."""

import sys

from . import main

sys.exit(main())
