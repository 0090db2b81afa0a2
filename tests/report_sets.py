"""Results sets written by hand for the report's tests (results.csv with results.COLUMNS, and
environment.json), as the sweep writes them, from a simple machine model with known answers.

Time of a point: ``overhead + max(FLOPs / rate, traffic / bandwidth)`` of the cost model, so the
exponents in k are known at large k; its 95% CI is +-``spread`` (stable when <= 5%).  The module
holds no tests; it also runs as a script to write example sets:
``python tests/report_sets.py OUT`` writes OUT/cpu, OUT/gpu and OUT/custom.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from softmax_core.runs.cases import EPOCH_CLASSES, EPOCH_FEATURES, EPOCH_SAMPLES, Case
from softmax_core.runs.resultformat import COLUMNS

SKIP_REASON = "needs 384.0 GB, budget 11.2 GB"
ERROR_REASON = "MemoryError: Unable to allocate 4.0 GiB"


@dataclass(frozen=True)
class Machine:
    label: str = "numpy-cpu"
    gemm_gflops: float = 200.0  # probed ceilings, written to environment.json
    copy_gbps: float = 20.0
    efficiency: float = 0.5  # share of the ceilings the points reach
    overhead_s: float = 30e-6
    memory_bytes: float = 12e9  # points whose peak exceeds it are skipped

    @property
    def device(self) -> str:
        return self.label.split("-")[-1]


CPU = Machine()
GPU = Machine(
    "cupy-gpu",
    gemm_gflops=40_000.0,
    copy_gbps=1500.0,
    efficiency=0.4,
    overhead_s=400e-6,
    memory_bytes=60e9,
)


def model_time(case: Case, machine: Machine) -> float:
    cost = case.cost
    compute = max(
        cost.flops / (machine.gemm_gflops * 1e9), cost.traffic_bytes / (machine.copy_gbps * 1e9)
    )
    calls = 1 if case.kind == "gradient" else -(-EPOCH_SAMPLES // case.batch)
    return calls * machine.overhead_s + compute / machine.efficiency


def row(
    case: Case,
    machine: Machine = CPU,
    *,
    spread: float = 0.01,
    status: str | None = None,
    reason: str = "",
    predicted_bias: float = 1.3,
) -> dict:
    """One results.csv row of ``case``: ok with a CI of +-``spread``, or skipped when its peak
    does not fit the machine (``status``/``reason`` force another outcome)."""
    cost = case.cost
    out = {c: "" for c in COLUMNS}
    out.update(
        run_id="fab123",
        timestamp="2026-01-01T00:00:00+00:00",
        backend=machine.label.split("-")[0],
        device=machine.device,
        kind=case.kind,
        method=case.method,
        batch=case.batch,
        features=case.features,
        classes=case.classes,
        dtype=case.dtype,
        data=case.data,
        samples=case.samples,
        predicted_bytes=cost.peak_bytes,
        predicted_lecture_bytes=cost.lecture_bytes,
        predicted_flops=cost.flops,
        predicted_traffic_bytes=cost.traffic_bytes,
        predicted_time_s=model_time(case, machine) * predicted_bias,
    )
    if status is None:
        status = "skipped" if cost.peak_bytes > machine.memory_bytes else "ok"
        reason = reason or (SKIP_REASON if status == "skipped" else "")
    out.update(status=status, reason=reason)
    if status != "ok":
        return out
    t = model_time(case, machine)
    out.update(
        time_median_s=t,
        time_ci_low_s=t * (1 - spread),
        time_ci_high_s=t * (1 + spread),
        time_min_s=t * (1 - spread),
        time_iqr_s=t * spread,
        time_first_s=t * 3,
        repeats=20,
        loops=1,
        rounds=2,
        stable=str(spread <= 0.05),
        host_time_median_s=t,
        peak_bytes=cost.peak_bytes * 1.01,
        samples_per_s=case.samples / t,
        gflops=cost.flops / t / 1e9,
        gbytes_per_s=cost.traffic_bytes / t / 1e9,
        load_before=0.5,
        load_after=0.6,
        others_cpu=0.02,
    )
    return out


def grid_rows(
    machine: Machine = CPU,
    *,
    batches=(1, 32, 96),
    classes=(10, 100, 1000),
    features=(1000,),
    epochs=(1, 8, 32, 96),
    unstable: set = frozenset(),
    dtype: str = "float32",
) -> list[dict]:
    """Every method x B x n x k gradient point and structured epochs per B; the points whose
    (method, batch, features, classes) are in ``unstable`` get a 20% CI (not stable)."""
    rows = []
    for method in ("structured", "naive", "naive_batched"):
        for b in batches:
            for n in features:
                for k in classes:
                    wide = (method, b, n, k) in unstable
                    rows.append(
                        row(
                            Case("gradient", method, b, n, k, dtype),
                            machine,
                            spread=0.2 if wide else 0.01,
                        )
                    )
    rows += [
        row(
            Case("epoch", "structured", b, EPOCH_FEATURES, EPOCH_CLASSES, dtype, "synthetic"),
            machine,
        )
        for b in epochs
    ]
    return rows


def write_set(folder: Path, rows: list[dict], machine: Machine = CPU, *, columns=COLUMNS) -> Path:
    """results.csv (only ``columns``, for files of older versions) and environment.json."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    backend, device = machine.label.split("-")
    env = {
        "created": "2026-01-01T00:00:00+00:00",
        "backend": {
            "backend": backend,
            "device": device,
            "label": machine.label,
            "numpy": "2.0",
            "cpu_model": "Test CPU",
            "cpu_cores": 4,
            "blas": "openblas 0.3",
            **({"gpu_name": "Test GPU", "gpu_memory_total_bytes": 80e9} if device == "gpu" else {}),
        },
        "machine": {
            "platform": "Linux",
            "memory_total_bytes": 16e9,
            "git_commit": "0123456789abcdef",
        },
        "probe": {"gemm_gflops": machine.gemm_gflops, "copy_gbps": machine.copy_gbps},
    }
    (folder / "environment.json").write_text(json.dumps(env), encoding="utf-8")
    return folder


def vary_spread(rows: list[dict], seed: int = 0, widest: float = 0.12) -> list[dict]:
    """The rows with CIs of random width up to +-``widest`` (those over 5% not stable)."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        if r["status"] == "ok":
            t, spread = r["time_median_s"], rng.uniform(0.005, widest)
            r = dict(
                r,
                time_ci_low_s=t * (1 - spread),
                time_ci_high_s=t * (1 + spread),
                stable=str(spread <= 0.05),
            )
        out.append(r)
    return out


def example_sets(root: Path) -> dict[str, Path]:
    """A CPU and a GPU set of the default grid's sizes, and a custom grid (B 1,4096; k 10,2000) with
    intervals of random width."""
    grid = dict(
        batches=(1, 8, 32, 96, 256, 1024),
        classes=(10, 100, 1000),
        features=(784, 1000),
        epochs=(1, 8, 32, 96, 256, 1024),
    )
    unstable = {("structured", 1, 784, 100), ("naive", 8, 1000, 10)}
    return {
        "cpu": write_set(root / "cpu", grid_rows(CPU, unstable=unstable, **grid)),
        "gpu": write_set(root / "gpu", grid_rows(GPU, **grid), GPU),
        "custom": write_set(
            root / "custom",
            vary_spread(
                grid_rows(
                    CPU,
                    batches=(1, 4096),
                    classes=(10, 2000),
                    features=(784, 1000),
                    epochs=(1, 8, 64, 512, 4096),
                )
            ),
        ),
    }


if __name__ == "__main__":
    print(example_sets(Path(sys.argv[1] if len(sys.argv) > 1 else "out/fabricated")))
