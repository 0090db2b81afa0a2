"""``python -m softmax_core.cli``: the same as the ``softmax-bench`` command."""

import sys

from . import main

sys.exit(main())
