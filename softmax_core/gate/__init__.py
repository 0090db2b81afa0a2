"""The regression gate: HEAD against BASE, point by point, in alternating pairs.

:func:`run_gate` (the command ``softmax-bench gate BASE HEAD``) in :mod:`.run`; the commits'
export in :mod:`.commits`, the measuring worker in :mod:`.worker` and its client in
:mod:`.workers`, the paired statistic and the verdicts in :mod:`.pairs`.
"""

from .commits import GateError
from .run import GateResult, run_gate, summary

__all__ = ["GateError", "GateResult", "run_gate", "summary"]
