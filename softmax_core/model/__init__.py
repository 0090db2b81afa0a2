"""The math: softmax regression (:mod:`.softmax`) and its cost model (:mod:`.cost`)."""
