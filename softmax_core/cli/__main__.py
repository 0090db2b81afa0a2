"""``python -m softmax_core.cli``: the same as the ``softmax-bench`` command."""

from . import console

console()
