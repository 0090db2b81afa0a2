"""Dask's machinery, below the backends (whose Dask adapter uses it): the cluster
(:mod:`.cluster`), what its engine did (:mod:`.metrics`), chunked synthetic data
(:mod:`.chunked`) and the SGD epoch in segments (:mod:`.epoch`)."""
