"""Yardsticks: plain hand-written loops (:mod:`.plain`) and softmax-bench measured side by
side against plain PyTorch (:mod:`.sidebyside`)."""
