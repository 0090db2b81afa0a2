"""Dask: the cluster (:mod:`.cluster`), what its engine did (:mod:`.metrics`), chunked
synthetic data (:mod:`.chunked`), the out-of-core gradient (:mod:`.out_of_core`) and the
scaling runs (:mod:`.scale`)."""
