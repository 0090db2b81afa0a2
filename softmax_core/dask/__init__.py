"""Dask: the cluster (:mod:`.cluster`), what its engine did (:mod:`.metrics`), chunked
synthetic data (:mod:`.chunked`), the SGD epoch in segments (:mod:`.epoch`) and the
out-of-core gradient (:mod:`.out_of_core`)."""
