"""Scripts of softmax-bench that are not installed: the asv plugin, the reference results and
the checks behind them."""
