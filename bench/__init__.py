"""The asv (airspeed velocity) benchmark suite of softmax-bench: see docs/asv.md.

Every point is a :class:`softmax_core.runs.cases.Case` of the sweep's grid
(:data:`softmax_core.runs.cases.DEFAULT_GRID`), measured by the sweep's engine
(:func:`softmax_core.measure.engine.measure`) with the sweep's settings; asv only stores and
compares what the engine measured.

* :mod:`.gradient`: ``Gradient.track_time`` (seconds) and ``Gradient.track_peak_bytes``
  (bytes) over method x batch x features x classes x dtype;
* :mod:`.epoch`: ``Epoch.track_time`` (seconds per SGD epoch) over method x batch x dtype;
* :mod:`.overhead`: ``EpochOverhead.track_ratio``, sgd_epoch over the tuned NumPy loop.

Which points run (the default suite or the full one, the device, the guard) is decided in
:mod:`.common`; a point that does not run is n/a.
"""
