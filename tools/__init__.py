"""Helper scripts of softmax-bench (asv plugin, asv gate, reference results); not installed."""
