"""The asv (airspeed velocity) benchmark suite of softmax-bench.

Every point is a :class:`softmax_core.cases.Case` of the sweep's grid
(:data:`softmax_core.cases.DEFAULT_GRID`): the parameters, the inputs, the
measured call and the guard that skips what would not fit come from
:mod:`softmax_core.cases`, never from a second copy here.

* :mod:`.bench_gradient`: one gradient (structured, naive, naive_batched) over
  method x batch x classes, for each feature count n of the grid: time,
  peak bytes above the inputs, the process's peak RSS, and naive / structured
  time ratios.
* :mod:`.bench_epoch`: one SGD epoch on MNIST-shaped data per batch size: time
  and samples/s.

The device comes from ``SOFTMAX_DEVICE`` (``cpu`` or ``gpu``), set per asv
environment by the matrix in ``asv.conf.json``.  A point over the memory or
time budget, and every point of a GPU environment on a machine without a GPU,
raises ``NotImplementedError`` in ``setup``: asv reports it as n/a, not as a
failure.
"""
