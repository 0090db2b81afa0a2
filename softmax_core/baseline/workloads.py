"""What the side-by-side comparison runs: its two workloads, and the array operations of
softmax-bench's step and gradient that its launch counts are checked against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.cost import epoch_cost, gradient_cost
from ..model.sgd import _ONE_HOT_CHUNK

#: The array operations of one SGD step of the structured method (model._sgd_step_structured).
STEP_OPS = (
    "X @ theta",
    "max over rows",
    "R -= max",
    "exp",
    "sum over rows",
    "R /= sum",
    "R -= I_y",
    "R *= lr/B",
    "X.T @ R",
    "theta -= X.T @ R",
)
#: I_y per chunk of batches in sgd_epoch: the comparison and the cast.
ONE_HOT_OPS = ("y == classes", "astype")
#: grad_structured's operations (model._grad_structured_sum and its / B).
GRAD_OPS = (
    "arange(k)",
    "X @ theta",
    "max over rows",
    "- max",
    "exp",
    "sum over rows",
    "/ sum",
    "y == classes",
    "astype",
    "Z - I_y",
    "X.T @ R",
    "/ B",
)


@dataclass(frozen=True)
class Workload:
    """An epoch (``lr`` set) of ``samples`` examples, or one gradient of a batch of ``samples``."""

    name: str
    title: str
    samples: int
    features: int
    classes: int
    batch: int
    lr: float | None = None

    kind = property(lambda self: "gradient" if self.lr is None else "epoch")

    @property
    def steps(self) -> int:
        return 1 if self.lr is None else -(-self.samples // self.batch)

    def cost(self):
        if self.lr is None:
            return gradient_cost("structured", self.samples, self.features, self.classes)
        return epoch_cost("structured", self.samples, self.features, self.classes, self.batch)

    @property
    def chunk_steps(self) -> int:
        """Steps per chunk of I_y's batches in sgd_epoch (MNIST: 65)."""
        return max(1, _ONE_HOT_CHUNK // (self.batch * self.classes))

    def static_launches_per_step(self) -> float:
        if self.lr is None:
            return float(len(GRAD_OPS))
        chunks = -(-self.steps // self.chunk_steps)
        return len(STEP_OPS) + len(ONE_HOT_OPS) * chunks / self.steps

    def profile_steps(self) -> int:
        """Steps profiled and compared: one chunk of I_y's batches, at most all."""
        return min(self.steps, self.chunk_steps)

    def theta0(self) -> np.ndarray:
        if self.lr is not None:  # the recipe: theta = 0
            return np.zeros((self.features, self.classes), np.float32)
        return (
            0.01 * np.random.default_rng(0).standard_normal((self.features, self.classes))
        ).astype(np.float32)


MNIST_EPOCH = Workload(
    "mnist_epoch",
    "MNIST epoch (60000 x 784, k = 10, batch 100, lr 0.2, theta = 0)",
    60_000,
    784,
    10,
    100,
    lr=0.2,
)
GRADIENT = Workload(
    "gradient", "structured gradient (B = 1024, n = k = 1000)", 1024, 1000, 1000, 1024
)


__all__ = ["Workload", "MNIST_EPOCH", "GRADIENT", "STEP_OPS", "ONE_HOT_OPS", "GRAD_OPS"]
