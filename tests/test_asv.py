"""The asv suite in bench/: its parameters come from the grid, its guard skips what
does not fit, ``asv check`` passes, and a quick ``asv run`` writes results that
:func:`softmax_core.report.load_asv_results` reads, with n/a (not failures) for a
GPU environment on a machine without a GPU.

The asv runs are subprocesses with ``HOME`` and the results in ``tmp_path``: the
user's ``~/.asv-machine.json`` and the repository's ``results/asv`` are never
touched.  About 30 s on 2 cores.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from softmax_core import BackendError, get_backend
from softmax_core.cases import DEFAULT_GRID, EPOCH_CLASSES, EPOCH_FEATURES, Case

REPO_ROOT = Path(__file__).resolve().parent.parent
MACHINE = "softmax-bench-test"
ASV_TIMEOUT_S = 240
# asv selects parameter combinations by a regex on "name(param, ...)": a few cheap points.
TINY_SUBSET = (
    r"TimeGradientN784\.time_gradient\('structured', (1|8), 10\)",
    r"TrackGradientMemoryN784\.track_peak_bytes\('naive', 1, 10\)",
    r"TimeEpoch\.time_epoch\('structured', 1024\)",
)
# name -> (parameters, expected a value) of the points in TINY_SUBSET
TINY_POINTS = {
    "bench_gradient.TimeGradientN784.time_gradient": [("structured", 1, 10), ("structured", 8, 10)],
    "bench_gradient.TrackGradientMemoryN784.track_peak_bytes": [("naive", 1, 10)],
    "bench_epoch.TimeEpoch.time_epoch": [("structured", 1024)],
}


def _has_gpu() -> bool:
    try:
        get_backend("gpu", "cupy")
    except BackendError:
        return False
    return True


@pytest.fixture
def bench(monkeypatch):
    """The bench package (importable from the repository root), with fresh caches."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from bench import bench_epoch, bench_gradient, common

    common.backend.cache_clear()
    common.guard.cache_clear()
    yield {"common": common, "gradient": bench_gradient, "epoch": bench_epoch}
    common.backend.cache_clear()
    common.guard.cache_clear()


# ---------------------------------------------------------------------------- the suite, in process

def test_parameters_come_from_the_grid(bench):
    g = bench["gradient"]
    for n in DEFAULT_GRID.features:
        cls = getattr(g, f"TimeGradientN{n}")
        assert cls.features == n
        assert cls.params == [list(DEFAULT_GRID.methods), list(DEFAULT_GRID.batches),
                              list(DEFAULT_GRID.classes)]
        assert cls.param_names == ["method", "batch", "classes"]
        for prefix in ("TrackGradientMemory", "PeakMemGradient", "TrackTimeRatio"):
            assert getattr(g, f"{prefix}N{n}").features == n
    assert bench["epoch"].TimeEpoch.params == [list(DEFAULT_GRID.epoch_methods), list(DEFAULT_GRID.batches)]
    assert g.TrackGradientMemoryN784.track_peak_bytes.unit == "bytes"
    assert g.TrackTimeRatioN784.track_time_ratio.unit == "ratio"
    assert bench["epoch"].TrackEpochThroughput.track_samples_per_s.unit == "samples/s"


def test_guard_skips_by_memory_and_predicted_time_without_history(bench, monkeypatch):
    common = bench["common"]
    monkeypatch.delenv("SOFTMAX_DEVICE", raising=False)
    monkeypatch.delenv("SOFTMAX_BACKEND", raising=False)
    # the rates measured on a 2-core x86 VM, and its memory budget (half of 24 GB)
    monkeypatch.setattr(common, "machine_rates", lambda b: {"gemm_gflops": 171.0, "copy_gbps": 23.0})
    monkeypatch.setattr(common, "default_memory_budget", lambda b: 12 * 10**9)

    def n_a(method, batch, classes, kind="gradient", n=784):
        case = Case(kind, method, batch, n, classes)
        try:
            common.require(case)
        except NotImplementedError as exc:
            return str(exc)
        return None

    assert n_a("structured", 1024, 1000) is None
    assert n_a("naive", 1, 1000) is None and n_a("naive", 1, 1000, n=1000) is None
    assert "predicted" in n_a("naive", 8, 1000)            # ~10 s a call: over the time budget
    assert "needs 384" in n_a("naive_batched", 96, 1000, n=1000)  # the lecture's 384 GB
    assert n_a("structured", 1, EPOCH_CLASSES, kind="epoch", n=EPOCH_FEATURES) is None


def test_gpu_without_gpu_is_not_implemented(bench, monkeypatch):
    if _has_gpu():
        pytest.skip("a GPU is present: SOFTMAX_DEVICE=gpu runs")
    monkeypatch.setenv("SOFTMAX_DEVICE", "gpu")
    monkeypatch.delenv("SOFTMAX_BACKEND", raising=False)
    bm = bench["gradient"].TimeGradientN784()
    with pytest.raises(NotImplementedError, match="SOFTMAX_DEVICE=gpu|cupy"):
        bm.setup("structured", 1, 10)


# ---------------------------------------------------------------------------- asv itself

@pytest.fixture
def asv_run(tmp_path):
    """Run ``python -m asv ...`` in the repository with HOME, results and caches in tmp_path."""
    asv_util = pytest.importorskip("asv.util", reason="asv is not installed: pip install 'softmax-bench[test]'")
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("asv needs the project's git repository")
    conf = asv_util.load_json(str(REPO_ROOT / "asv.conf.json"), js_comments=True)
    results = tmp_path / "results"
    conf.update(repo=str(REPO_ROOT), benchmark_dir=str(REPO_ROOT / "bench"), results_dir=str(results),
                html_dir=str(tmp_path / "html"), env_dir=str(tmp_path / "env"))
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps(conf, indent=2), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    base_env = {k: v for k, v in os.environ.items() if k not in ("SOFTMAX_DEVICE", "SOFTMAX_BACKEND")}
    # a private probe cache: a probe taken while the tests load the CPU would slow later real runs' guard
    base_env.update(HOME=str(home), SOFTMAX_ASV_CACHE=str(tmp_path / "cache"))

    def run(*args, extra_env=None, config_file=config):
        env = dict(base_env, **(extra_env or {}))
        proc = subprocess.run([sys.executable, "-m", "asv", "--config", str(config_file), *args],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=ASV_TIMEOUT_S)
        return proc

    proc = run("machine", "--yes", "--machine", MACHINE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (home / ".asv-machine.json").is_file()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    run.results, run.head, run.repo_config = results, head, REPO_ROOT / "asv.conf.json"
    return run


def _quick_run(asv_run, *env_spec, extra_env=None):
    bench_args = [a for regex in TINY_SUBSET for a in ("--bench", regex)]
    return asv_run("run", *env_spec, "--quick", "--show-stderr", "--set-commit-hash", asv_run.head,
                   "--machine", MACHINE, *bench_args, extra_env=extra_env)


def _values(path: Path) -> dict:
    """Values of the TINY_POINTS in an asv result file: {(name, params): value}."""
    data = json.loads(path.read_text(encoding="utf-8"))  # asv writes NaN for n/a; Python reads it
    columns = data["result_columns"]
    out = {}
    for name, points in TINY_POINTS.items():
        row = dict(zip(columns, data["results"][name]))
        # asv stores parameter values as reprs: "'structured'", "8"
        combos = [tuple(ast.literal_eval(p) for p in combo) for combo in itertools.product(*row["params"])]
        for point in points:
            out[name, point] = row["result"][combos.index(point)]
    return out


def _is_na(value) -> bool:
    """asv's n/a (setup raised NotImplementedError) is NaN; a failure is null."""
    return isinstance(value, float) and math.isnan(value)


@pytest.mark.slow
def test_asv_check_passes(asv_run):
    proc = asv_run("check", "--python=same", config_file=asv_run.repo_config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout


@pytest.mark.slow
def test_quick_run_writes_results_that_the_report_reads(asv_run):
    proc = _quick_run(asv_run, "--python=same")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    machine_dir = asv_run.results / MACHINE
    files = {p.name: p for p in machine_dir.glob(f"{asv_run.head[:8]}-*.json")}
    cpu = [p for name, p in files.items() if name.endswith("SOFTMAX_DEVICEcpu.json")]
    gpu = [p for name, p in files.items() if name.endswith("SOFTMAX_DEVICEgpu.json")]
    assert len(cpu) == 1 and len(gpu) == 1, sorted(files)
    for point, value in _values(cpu[0]).items():
        assert isinstance(value, (int, float)) and value > 0 and math.isfinite(value), (point, value, out)
    gpu_values = _values(gpu[0])
    if _has_gpu():
        assert all(v is not None and math.isfinite(v) for v in gpu_values.values()), gpu_values
    else:
        assert all(_is_na(v) for v in gpu_values.values()), gpu_values  # n/a, not failed (None)

    report = pytest.importorskip("softmax_core.report")
    if not hasattr(report, "load_asv_results"):
        pytest.skip("softmax_core.report.load_asv_results does not exist yet")
    df = report.load_asv_results(asv_run.results)
    assert set(df["machine"]) == {MACHINE}
    assert set(df["commit_hash"]) == {asv_run.head}
    on_cpu = df[df["env_name"].str.endswith("SOFTMAX_DEVICEcpu")]
    timed = on_cpu[(on_cpu["benchmark"] == "bench_gradient.TimeGradientN784.time_gradient")
                   & (on_cpu["method"] == "structured") & (on_cpu["classes"] == 10)
                   & on_cpu["batch"].isin([1, 8])]
    assert list(timed["status"]) == ["ok", "ok"] and (timed["value"] > 0).all()
    assert (timed["unit"] == "seconds").all()
    peak = on_cpu[(on_cpu["benchmark"] == "bench_gradient.TrackGradientMemoryN784.track_peak_bytes")
                  & (on_cpu["status"] == "ok")]
    assert len(peak) == 1 and peak["unit"].iloc[0] == "bytes" and peak["value"].iloc[0] > 0
    assert "failed" not in set(df["status"])
    if not _has_gpu():
        on_gpu = df[df["env_name"].str.endswith("SOFTMAX_DEVICEgpu")]
        assert len(on_gpu) and set(on_gpu["status"]) == {"skipped"}


@pytest.mark.slow
def test_softmax_device_gpu_from_the_callers_environment_is_na_without_gpu(asv_run):
    """``-E existing:same`` ignores the matrix: the caller's SOFTMAX_DEVICE reaches the benchmarks."""
    if _has_gpu():
        pytest.skip("a GPU is present: SOFTMAX_DEVICE=gpu would run")
    proc = _quick_run(asv_run, "-E", "existing:same", extra_env={"SOFTMAX_DEVICE": "gpu"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    files = list((asv_run.results / MACHINE).glob(f"{asv_run.head[:8]}-existing-*.json"))
    assert len(files) == 1, files
    assert "SOFTMAX_DEVICE" not in files[0].name  # not a matrix environment
    values = _values(files[0])
    assert all(_is_na(v) for v in values.values()), values  # n/a, not failed (None)
    assert "SOFTMAX_DEVICE=gpu was asked for" in out or "cupy" in out
