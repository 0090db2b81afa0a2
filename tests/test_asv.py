"""The asv suite in bench/ and its plugin tools/asv_device.py.

In process: the parameters are the grid's, the default suite is the documented subset,
every benchmark's value comes from the measuring engine (asv's ``--quick`` included), the
device and suite name asv's environments, and n/a comes fast where a point cannot run.

Through asv itself (marked slow; about 40 s on 2 cores): on a copy of the working tree
committed to a scratch repository, ``asv check``, ``asv run --quick`` on the CPU and then
with ``SOFTMAX_DEVICE=gpu`` (a separate result file; the CPU's untouched), ``asv compare``
flagging a 2x slower structured gradient as a regression and a no-op as none, and
``asv publish``, after which ``git status --porcelain`` is still empty.  HOME and the probe
cache are in ``tmp_path``: the user's ``~/.asv-machine.json`` and results are never touched.
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
import time
from pathlib import Path

import numpy as np
import pytest

from softmax_core import BackendError, get_backend
from softmax_core.runs.cases import DEFAULT_GRID, Case
from softmax_core.runs.guard import MIN_SAMPLES

REPO_ROOT = Path(__file__).resolve().parent.parent
MACHINE = "softmax-bench-test"
ASV_TIMEOUT_S = 240
#: The benchmarks of the suite, all ``track_``: the engine measures, asv never times.
BENCHMARKS = {
    "gradient.Gradient.track_time": "seconds",
    "gradient.Gradient.track_peak_bytes": "bytes",
    "epoch.Epoch.track_time": "seconds",
    "overhead.EpochOverhead.track_ratio": "ratio",
}
GRADIENT_PARAMS = ["method", "batch", "features", "classes", "dtype"]


def _has_gpu() -> bool:
    try:
        get_backend("gpu", "cupy")
    except BackendError:
        return False
    return True


@pytest.fixture(scope="session")
def probe_cache(tmp_path_factory) -> Path:
    """The suite's probe cache of this test session: probed once (three probes, a few seconds),
    as every process of an asv run shares it; the cache's own tests use their own."""
    return tmp_path_factory.mktemp("probe-cache")


@pytest.fixture
def bench(monkeypatch, probe_cache):
    """The bench package (importable from the repository root), with fresh caches, the
    default suite on the CPU, and the session's probe cache."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    for var in ("SOFTMAX_DEVICE", "SOFTMAX_BACKEND", "SOFTMAX_ASV_SUITE", "SOFTMAX_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SOFTMAX_ASV_CACHE", str(probe_cache))
    from bench import common, epoch, gradient, overhead

    for f in (common.backend, common.guard):
        f.cache_clear()
    yield {"common": common, "gradient": gradient, "epoch": epoch, "overhead": overhead}
    for f in (common.backend, common.guard):
        f.cache_clear()


@pytest.fixture
def reference_rates(bench, monkeypatch):
    """The guard of the 2-core reference machine: its probed rates and half of 24 GB."""
    common = bench["common"]
    monkeypatch.setattr(
        common, "machine_rates", lambda b: {"gemm_gflops": 179.6, "copy_gbps": 22.0}
    )
    monkeypatch.setattr(common, "default_memory_budget", lambda b: 12 * 10**9)
    return common


def _n_a(common, case: Case) -> str | None:
    try:
        common.require(case)
    except NotImplementedError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------- the suite, in process


def test_parameters_come_from_the_grid_and_name_the_whole_point(bench):
    g, e = bench["gradient"].Gradient, bench["epoch"].Epoch
    assert g.param_names == GRADIENT_PARAMS
    assert g.params == [
        list(DEFAULT_GRID.methods),
        list(DEFAULT_GRID.batches),
        list(DEFAULT_GRID.features),
        list(DEFAULT_GRID.classes),
        [DEFAULT_GRID.dtype],
    ]
    assert e.param_names == ["method", "batch", "dtype"]
    assert e.params == [
        list(DEFAULT_GRID.epoch_methods),
        list(DEFAULT_GRID.batches),
        [DEFAULT_GRID.dtype],
    ]


def test_every_benchmark_is_a_track_with_a_unit_and_none_measures_twice():
    """asv's own discovery finds exactly the four benchmarks: no time_ (asv's timing loop),
    no ratio or throughput re-measuring a time, each with its unit."""
    from asv_runner.discovery import disc_benchmarks

    found = {b.name: b for b in disc_benchmarks(str(REPO_ROOT / "bench"))}
    assert set(found) == set(BENCHMARKS)
    for name, unit in BENCHMARKS.items():
        assert found[name].type == "track" and found[name].unit == unit, name


def test_default_suite_is_the_grid_under_the_time_limit(bench):
    common = bench["common"]
    default = {c.key for c in common.suite_points("gradient", "default")}
    full = {c.key for c in common.suite_points("gradient", "full")}
    assert full == {c.key for c in DEFAULT_GRID.cases() if c.kind == "gradient"}
    structured = {k for k in full if k[1] == "structured"}
    assert structured <= default  # the structured gradient over the whole grid
    g = lambda m, b, n, k: Case("gradient", m, b, n, k).key  # noqa: E731
    for method in ("naive", "naive_batched"):
        assert {g(method, b, n, 10) for b in DEFAULT_GRID.batches for n in (784, 1000)} <= default
        assert g(method, 8, 1000, 100) in default
        assert g(method, 32, 784, 100) not in default  # 0.16-0.26 s a call: full suite only
        assert not {k for k in default if k[1] == method and k[4] == 1000}  # naive at k = 1000
    assert len(default) == 36 + 2 * 16
    epochs = {c.batch for c in common.suite_points("epoch", "default")}
    assert epochs == {32, 96, 256, 1024}
    assert {c.batch for c in common.suite_points("epoch", "full")} == set(DEFAULT_GRID.batches)


def test_points_outside_the_suite_or_the_guard_are_n_a_with_the_reason(
    reference_rates, monkeypatch
):
    common = reference_rates
    heavy = Case("gradient", "naive", 1, 784, 1000)
    assert "SOFTMAX_ASV_SUITE=full" in _n_a(common, heavy)
    assert _n_a(common, Case("gradient", "structured", 1024, 1000, 1000)) is None
    monkeypatch.setenv("SOFTMAX_ASV_SUITE", "full")
    assert _n_a(common, heavy) is None  # ~0.6 s a call: runs
    assert "predicted" in _n_a(common, Case("gradient", "naive", 8, 1000, 1000))  # ~10 s a call
    assert "needs 384" in _n_a(
        common, Case("gradient", "naive_batched", 96, 1000, 1000)
    )  # the lecture's 384 GB
    monkeypatch.setenv("SOFTMAX_ASV_SUITE", "everything")
    with pytest.raises(ValueError, match="SOFTMAX_ASV_SUITE"):
        common.require(heavy)


def test_gpu_without_gpu_is_n_a_at_once(bench, monkeypatch):
    if _has_gpu():
        pytest.skip("a GPU is present: SOFTMAX_DEVICE=gpu runs")
    monkeypatch.setenv("SOFTMAX_DEVICE", "gpu")
    start = time.perf_counter()
    with pytest.raises(NotImplementedError, match="SOFTMAX_DEVICE=gpu|cupy|CuPy"):
        bench["gradient"].Gradient().setup("structured", 1, 784, 10, "float32")
    with pytest.raises(NotImplementedError):
        bench["overhead"].EpochOverhead().setup()
    assert time.perf_counter() - start < 5


@pytest.mark.slow
def test_track_time_is_the_engines_measurement_of_a_prepared_point(bench):
    """setup prepares the inputs once; the whole measurement (cold call, warm-up, samples)
    runs inside the track call, so asv re-running setup cannot change it; asv's median of
    the samples is the engine's median."""
    from asv_runner.statistics import compute_stats

    bm = bench["gradient"].Gradient()
    bm.setup("structured", 8, 784, 10, "float32")
    bm.setup("structured", 8, 784, 10, "float32")  # as asv may: fresh inputs, same point
    out = bm.track_time("structured", 8, 784, 10, "float32")
    assert set(out) == {"samples", "number"}
    assert len(out["samples"]) >= MIN_SAMPLES and out["number"] >= 1
    assert all(isinstance(t, float) and 0 < t < 0.1 for t in out["samples"])
    value, stats = compute_stats(out["samples"], out["number"])
    assert value == pytest.approx(float(np.median(out["samples"])))
    assert stats["ci_99_a"] <= value <= stats["ci_99_b"]
    peak = bm.track_peak_bytes("structured", 8, 784, 10, "float32")
    case = Case("gradient", "structured", 8, 784, 10)
    assert 0.5 * case.cost.peak_bytes <= peak <= 2 * case.cost.peak_bytes


@pytest.mark.slow
def test_asv_quick_is_seen_in_a_real_asv_runner_process(bench, tmp_path):
    """asv_runner's own ``_run`` (what a spawned or forked benchmark process calls): with
    --quick's attributes one sample; with ``-a rounds=6``, a sixth of the engine's full
    measurement (the full one: test_track_time_is_the_engines_measurement_...)."""
    from asv_runner.run import _run

    counts = {}
    quick = {"number": 1, "repeat": 1, "warmup_time": 0}
    for label, params in (("quick", quick), ("round", {"rounds": 6})):
        result = tmp_path / f"{label}.json"
        _run(
            (
                str(REPO_ROOT / "bench"),
                "gradient.Gradient.track_time-0",
                json.dumps(params),
                "None",
                str(result),
            )
        )
        counts[label] = len(json.loads(result.read_text())["samples"])
    assert counts["quick"] == 1
    assert counts["round"] >= bench["common"].asv_samples_per_round(6) > 1


def test_asv_rounds_share_out_the_points_sampling_time_as_the_sweeps_rounds_do(bench, monkeypatch):
    """``-a rounds=3`` (the interleaved gate): each round samples a third of one round's
    time, and the rounds together give asv at least ASV_MIN_SAMPLES samples."""
    from softmax_core.measure import engine

    common = bench["common"]
    seen = []
    monkeypatch.setattr(
        common.engine,
        "measure",
        lambda fn, *a, **kw: seen.append(kw) or engine.Measurement.from_samples([1e-3] * 5),
    )
    # asv_runner's _run, as the suite finds it: a function of that name in module asv_runner.run
    runner = {"__name__": "asv_runner.run", "common": common}
    exec(
        "def _run(extra_params):\n    return common.asv_rounds(), common.measured(len, ((),))",
        runner,
    )
    assert runner["_run"]({"rounds": 3})[0] == 3
    assert runner["_run"]({})[0] == 1 and common.asv_rounds() == 1
    three, one = seen
    assert three["max_time_s"] == pytest.approx(common.MAX_TIME_S / 3)
    assert three["min_time_s"] == pytest.approx(engine.MIN_TIME_S / 3)
    assert three["min_samples"] == common.asv_samples_per_round(3) == 3
    assert one["max_time_s"] == common.MAX_TIME_S and one["min_time_s"] == engine.MIN_TIME_S
    assert one["min_samples"] == common.ASV_MIN_SAMPLES


@pytest.mark.parametrize("rounds", [1, 2, 3, 6])
def test_a_point_gives_asv_enough_samples_to_be_found_slower(bench, rounds):
    """asv's Mann-Whitney test at p < 0.002 can never separate 6 samples from 6: 3 rounds of 2
    samples would hide a 2x slowdown."""
    is_different = pytest.importorskip("asv._stats", reason="asv is not installed").is_different

    common = bench["common"]
    n = rounds * common.asv_samples_per_round(rounds)
    before = [1.0 + 0.001 * i for i in range(n)]
    after = [2.0 + 0.001 * i for i in range(n)]
    ci = {"ci_99_a": 1.0, "ci_99_b": 1.01}, {"ci_99_a": 2.0, "ci_99_b": 2.01}
    assert is_different(before, after, *ci)


#: A commit of the older, flat layout.  asv runs today's bench/ against each commit's
#: softmax_core.
OLDER_LIBRARY = "1dfc00d"


@pytest.mark.slow
def test_the_suite_runs_against_an_older_commits_library(bench, tmp_path):
    """bench/ may use only what older commits' softmax_core has: with calls_per_point(...,
    min_samples=...) from a newer library, every point of 1dfc00d failed with a TypeError."""
    have = subprocess.run(
        ["git", "cat-file", "-e", f"{OLDER_LIBRARY}^{{commit}}"], cwd=REPO_ROOT, capture_output=True
    )
    if have.returncode != 0:
        pytest.skip(f"commit {OLDER_LIBRARY} is not in this clone (shallow?)")
    archive = subprocess.run(
        ["git", "archive", OLDER_LIBRARY, "softmax_core"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    code = (
        f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(REPO_ROOT)!r}]\n"
        "import softmax_core\n"
        f"assert softmax_core.__file__.startswith({str(tmp_path)!r}), softmax_core.__file__\n"
        "from bench import gradient\n"
        "bm = gradient.Gradient()\n"
        "bm.setup('structured', 1, 784, 10, 'float32')\n"
        "out = bm.track_time('structured', 1, 784, 10, 'float32')\n"
        "print(len(out['samples']))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTMAX_")}
    env["SOFTMAX_ASV_CACHE"] = os.environ["SOFTMAX_ASV_CACHE"]  # the bench fixture's
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) >= bench["common"].ASV_MIN_SAMPLES


def test_overhead_is_a_ratio_of_sgd_epoch_over_numpy(bench, monkeypatch):
    ov = bench["overhead"]
    monkeypatch.setattr(ov, "ROUNDS", 3)
    monkeypatch.setattr(ov, "MAX_TIME_S", 0.0)
    monkeypatch.setattr(ov, "EPOCH_SAMPLES", 2000)  # 20 steps: the same loops, faster
    bm = ov.EpochOverhead()
    bm.setup()
    out = bm.track_ratio()
    assert out["number"] == 1 and len(out["samples"]) >= 3
    assert all(r > 0 and math.isfinite(r) and r == round(r, 4) for r in out["samples"])


# ---------------------------------------------------------------------------- the plugin


def _env_names(monkeypatch, **environ) -> list[tuple]:
    from asv import config, environment
    from asv.plugin_manager import plugin_manager

    for var in ("SOFTMAX_DEVICE", "SOFTMAX_BACKEND", "SOFTMAX_ASV_SUITE", "SOFTMAX_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(REPO_ROOT)  # asv imports ".tools.asv_device" from the working folder
    conf = config.Config.load(str(REPO_ROOT / "asv.conf.json"))
    for plugin in conf.plugins:
        plugin_manager.import_plugin(plugin)
    return [
        (env.name, env.dir_name, dict(env.requirements), env.env_vars)
        for spec in (None, ["existing:same"])
        for env in environment.get_environments(conf, spec, verbose=False)
    ]


def test_device_and_suite_from_the_shell_name_asvs_environments(monkeypatch):
    pytest.importorskip("asv", reason="asv is not installed: pip install 'softmax-bench[test]'")
    cpu = _env_names(monkeypatch)
    assert cpu == _env_names(monkeypatch, SOFTMAX_DEVICE="cpu")
    gpu = _env_names(monkeypatch, SOFTMAX_DEVICE="gpu")
    full = _env_names(monkeypatch, SOFTMAX_DEVICE="gpu", SOFTMAX_ASV_SUITE="full")
    (venv_cpu, dir_cpu, req_cpu, vars_cpu), (existing_cpu, *_) = cpu
    (venv_gpu, dir_gpu, req_gpu, vars_gpu), (existing_gpu, *_) = gpu
    assert venv_cpu.endswith("-SOFTMAX_DEVICEcpu") and existing_cpu.startswith("existing-")
    assert existing_cpu.endswith("-SOFTMAX_DEVICEcpu") and existing_gpu.endswith(
        "-SOFTMAX_DEVICEgpu"
    )
    assert venv_gpu.endswith("-cupy-cuda12x-SOFTMAX_DEVICEgpu") and req_gpu == {"cupy-cuda12x": ""}
    assert req_cpu == {} and dir_cpu != dir_gpu  # CuPy in a virtualenv of its own
    assert vars_cpu == {"SOFTMAX_DEVICE": "cpu"} and vars_gpu == {"SOFTMAX_DEVICE": "gpu"}
    assert "-SOFTMAX_ASV_SUITEfull-" in full[0][0] and full[0][0].endswith("-SOFTMAX_DEVICEgpu")
    one = _env_names(monkeypatch, SOFTMAX_THREADS="1")
    assert (
        one[0][0].endswith("-SOFTMAX_DEVICEcpu-SOFTMAX_THREADS1")
        and one[0][3]["SOFTMAX_THREADS"] == "1"
    )
    from asv import util

    with pytest.raises(util.UserError, match="SOFTMAX_DEVICE='tpu'"):
        _env_names(monkeypatch, SOFTMAX_DEVICE="tpu")
    with pytest.raises(util.UserError, match="SOFTMAX_THREADS='0'"):
        _env_names(monkeypatch, SOFTMAX_THREADS="0")
    # what the command line refuses, asv refuses at once, before any point runs
    too_many = str((os.cpu_count() or 1) + 1)
    with pytest.raises(util.UserError, match=f"SOFTMAX_THREADS='{too_many}'.*use 1 to"):
        _env_names(monkeypatch, SOFTMAX_THREADS=too_many)
    with pytest.raises(util.UserError, match="SOFTMAX_BACKEND='bogus' is not a backend"):
        _env_names(monkeypatch, SOFTMAX_BACKEND="bogus")


def test_softmax_threads_limits_the_blas_of_a_benchmark(bench, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("SOFTMAX_THREADS", "1")
    with threadpoolctl.threadpool_limits(limits=None):  # restores the pools afterwards
        bench["common"].backend()
        pools = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert pools and all(p["num_threads"] == 1 for p in pools)
    for text in ("two", "²"):  # "²" is a digit to str.isdigit, but no number
        monkeypatch.setenv("SOFTMAX_THREADS", text)
        with pytest.raises(ValueError, match="SOFTMAX_THREADS.*positive integer"):
            bench["common"].threads()
    monkeypatch.setenv("SOFTMAX_THREADS", "99999")
    with pytest.raises(ValueError, match="SOFTMAX_THREADS=99999 is more than the"):
        bench["common"].threads()


# ---------------------------------------------------------------------------- asv itself


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, probe_cache):
    """A copy of the working tree (tracked and untracked files, not the ignored ones) committed
    twice to a scratch git repository, with asv's machine file in a private HOME."""
    pytest.importorskip("asv", reason="asv is not installed: pip install 'softmax-bench[test]'")
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("asv needs the project's git repository")
    tmp = tmp_path_factory.mktemp("asv")
    repo = tmp / "repo"
    files = _git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split(
        "\0"
    )
    for name in filter(None, files):
        src = REPO_ROOT / name
        if src.is_file() and not name.startswith("results/"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    _git(repo, "init", "-q", "-b", "main")
    for key, value in (
        ("user.name", "test"),
        ("user.email", "test@example.com"),
        ("commit.gpgsign", "false"),
    ):
        _git(repo, "config", key, value)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "head")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "slow")  # its code is changed at run time
    home = tmp / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SOFTMAX_DEVICE", "SOFTMAX_BACKEND", "SOFTMAX_ASV_SUITE", "SOFTMAX_THREADS")
    }
    env.update(HOME=str(home), SOFTMAX_ASV_CACHE=str(probe_cache))

    def asv(*args, extra_env=None):
        proc = subprocess.run(
            [sys.executable, "-m", "asv", *args],
            cwd=repo,
            env=dict(env, **(extra_env or {})),
            capture_output=True,
            text=True,
            timeout=ASV_TIMEOUT_S,
        )
        return proc

    proc = asv("machine", "--yes", "--machine", MACHINE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    asv.repo, asv.tmp = repo, tmp
    asv.results = repo / ".asv" / "results" / MACHINE
    asv.base, asv.head, asv.slow = (_git(repo, "rev-parse", f"HEAD~{i}").strip() for i in (2, 1, 0))
    return asv


def _result_file(asv, commit: str, device: str) -> Path:
    files = list(asv.results.glob(f"{commit[:8]}-existing-*SOFTMAX_DEVICE{device}.json"))
    assert len(files) == 1, sorted(p.name for p in asv.results.iterdir())
    return files[0]


def _values(path: Path, name: str) -> dict:
    """{parameters: value} of one benchmark in an asv result file (asv writes NaN for n/a)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    row = dict(zip(data["result_columns"], data["results"][name]))
    combos = [tuple(ast.literal_eval(p) for p in c) for c in itertools.product(*row["params"])]
    return dict(zip(combos, row["result"])), dict(
        zip(combos, row.get("stats_repeat") or [None] * len(combos))
    )


#: A few cheap points: asv selects parameter combinations by a regex on "name(param, ...)".
SMOKE = (
    r"gradient.Gradient.track_time\('structured', (1|8), 784, (10|1000), 'float32'\)",
    r"gradient.Gradient.track_time\('naive', 1, 784, 1000, 'float32'\)",
    r"gradient.Gradient.track_peak_bytes\('naive', 1, 784, 10, 'float32'\)",
    r"epoch.Epoch.track_time\('structured', 1024, 'float32'\)",
)


def _bench_args(*regexes: str) -> list[str]:
    return [a for r in regexes for a in ("--bench", r)]


@pytest.mark.slow
def test_asv_check_passes(scratch):
    proc = scratch("check", "--python=same")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No problems found" in proc.stdout


@pytest.mark.slow
def test_quick_run_then_gpu_run_keep_apart_and_leave_the_tree_clean(scratch):
    proc = scratch(
        "run",
        "--python=same",
        "--quick",
        "--set-commit-hash",
        scratch.head,
        "--machine",
        MACHINE,
        *_bench_args(*SMOKE),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    cpu = _result_file(scratch, scratch.head, "cpu")
    times, repeats = _values(cpu, "gradient.Gradient.track_time")
    for b, k in itertools.product((1, 8), (10, 1000)):
        point = ("structured", b, 784, k, "float32")
        assert 0 < times[point] < 1 and repeats[point] == 1, (point, out)  # --quick: one sample
    assert math.isnan(times["naive", 1, 784, 1000, "float32"])  # not in the default suite: n/a
    peaks, _ = _values(cpu, "gradient.Gradient.track_peak_bytes")
    assert peaks["naive", 1, 784, 10, "float32"] > 0
    epochs, _ = _values(cpu, "epoch.Epoch.track_time")
    assert 0 < epochs["structured", 1024, "float32"] < 30
    cpu_bytes = cpu.read_bytes()

    proc = scratch(
        "run",
        "--python=same",
        "--quick",
        "--set-commit-hash",
        scratch.head,
        "--machine",
        MACHINE,
        *_bench_args(*SMOKE),
        extra_env={"SOFTMAX_DEVICE": "gpu"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gpu_times, _ = _values(
        _result_file(scratch, scratch.head, "gpu"), "gradient.Gradient.track_time"
    )
    if not _has_gpu():
        assert all(v is not None and math.isnan(v) for v in gpu_times.values())  # n/a, not failed
    assert cpu.read_bytes() == cpu_bytes  # the CPU results of the same commit are untouched

    proc = scratch("publish")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (scratch.repo / ".asv" / "html" / "index.html").is_file()
    assert _git(scratch.repo, "status", "--porcelain") == ""


@pytest.mark.slow
def test_compare_flags_a_2x_slower_structured_gradient_and_not_a_no_op(scratch):
    """asv's regression check on the engine's samples as asv stored them.

    The base commit is measured for real (two structured points, samples recorded).  The
    three commits then get results made from those samples through asv's own ``Results``
    API: the base's are its median +-2%, the no-op's those resampled (seed 0), the slow
    one's those doubled.  ``asv compare --factor 1.2`` must flag both points of the slow
    commit and nothing of the no-op.  Made-up samples keep this test exact on a loaded
    machine, whose real samples can spread past a factor of 2."""
    from asv.results import Results
    from asv.runner import BenchmarkResult
    from asv.util import load_json

    name = "gradient.Gradient.track_time"
    points = r"gradient.Gradient.track_time\('structured', (1|8), 784, 100, 'float32'\)"
    proc = scratch(
        "run",
        "--python=same",
        "--set-commit-hash",
        scratch.base,
        "--machine",
        MACHINE,
        "--record-samples",
        "--bench",
        points,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    base = Results.load(str(_result_file(scratch, scratch.base, "cpu")), MACHINE)
    bench = load_json(str(scratch.repo / ".asv" / "results" / "benchmarks.json"))[name]
    samples = base.get_result_samples(name, bench["params"])
    measured = [s for s in samples if s]
    assert len(measured) == 2 and all(
        len(s) >= 5 for s in measured
    )  # the engine's samples, kept by asv
    stats = base.get_result_stats(name, bench["params"])
    rng = np.random.default_rng(0)

    def tight(s):  # the measured median, +-2%: a loaded machine's spread would hide a change
        return [float(np.median(s)) * (1 + 0.01 * (i % 5 - 2)) for i in range(len(s))]

    for commit, change in (
        (scratch.base, tight),
        (scratch.head, lambda s: list(rng.choice(tight(s), size=len(s)))),
        (scratch.slow, lambda s: [2 * t for t in tight(s)]),
    ):
        new = [change(s) if s else None for s in samples]
        result = Results(
            base.params,
            base._requirements,
            commit,
            base.date,
            base._python,
            base.env_name,
            base.env_vars,
        )
        result.add_result(
            bench,
            BenchmarkResult(
                result=[True if s else math.nan for s in new],
                samples=new,
                number=[st["number"] if st else None for st in stats],
                errcode=0,
                stderr="",
                profile=None,
            ),
            record_samples=True,
        )
        result.save(str(scratch.repo / ".asv" / "results"))

    def regressions(after):
        proc = scratch(
            "compare",
            "--machine",
            MACHINE,
            "--factor",
            "1.2",
            "--only-changed",
            "-E",
            base.env_name,
            scratch.base,
            after,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return [line for line in proc.stdout.splitlines() if line.startswith("| +")], proc.stdout

    worse, out = regressions(scratch.head)
    assert worse == [], out
    worse, out = regressions(scratch.slow)
    assert len(worse) == 2 and all("track_time('structured'" in line for line in worse), out
    assert all(1.9 < float(line.split("|")[4]) < 2.1 for line in worse), out


def test_reference_results_are_copied_only_by_the_deliberate_step(tmp_path, monkeypatch):
    """tools/asv_reference.py copies chosen commits' results (and benchmarks.json, machine.json)
    from asv's ignored results folder into the reference folder; --replace drops stale ones."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from tools.asv_reference import copy_reference

    src, dest = tmp_path / "asv-results", tmp_path / "reference"
    (src / "box").mkdir(parents=True)
    (src / "benchmarks.json").write_text("{}")
    (src / "box" / "machine.json").write_text("{}")
    a, b = "a" * 40, "b" * 40
    for name in (
        f"{a[:8]}-virtualenv-py3.11-SOFTMAX_DEVICEcpu.json",
        f"{a[:8]}-virtualenv-py3.11-cupy-cuda12x-SOFTMAX_DEVICEgpu.json",
        f"{b[:8]}-virtualenv-py3.11-SOFTMAX_DEVICEcpu.json",
    ):
        (src / "box" / name).write_text(name)
    (dest / "box").mkdir(parents=True)
    (dest / "box" / "0ld00000-virtualenv-py3.11-SOFTMAX_DEVICEcpu.json").write_text("old")
    copied = copy_reference(src, dest, None, [a], replace=True, env="SOFTMAX_DEVICEcpu")
    assert sorted(p.name for p in (dest / "box").iterdir()) == [
        f"{a[:8]}-virtualenv-py3.11-SOFTMAX_DEVICEcpu.json",
        "machine.json",
    ]
    assert (dest / "benchmarks.json").is_file() and len(copied) == 3
    with pytest.raises(SystemExit, match="no results of commit"):
        copy_reference(src, dest, "box", ["c" * 40])


def _counted_probes(monkeypatch) -> list:
    """The machine probe made instant; the list gets one item per probe taken."""
    from softmax_core.measure import engine

    probes = []
    fake = {"gemm_gflops": 1.0, "copy_gbps": 1.0}
    monkeypatch.setattr(engine, "probe_machine", lambda b: probes.append(1) or dict(fake))
    return probes


def test_a_cached_probe_of_another_probe_version_is_not_reused(tmp_path, monkeypatch):
    """A probe cached before the copy probe kept its pages measured something else."""
    from bench import common
    from softmax_core.measure import engine

    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path))
    probes = _counted_probes(monkeypatch)
    b = common.backend()
    common.machine_rates(b)
    common.machine_rates(b)
    assert len(probes) == 3  # the best of three, once
    monkeypatch.setattr(engine, "PROBE_VERSION", engine.PROBE_VERSION + 1)
    common.machine_rates(b)
    assert len(probes) == 6


def test_the_cached_probe_is_keyed_by_blas_threads_and_kept_in_the_users_own_cache(
    tmp_path, monkeypatch
):
    """A probe taken at 2 BLAS threads is never reused by a 1-thread run, the cache lives in
    the user's cache folder (not the shared temporary one), and a file of another user there
    is not trusted."""
    from threadpoolctl import threadpool_limits

    from bench import common

    monkeypatch.delenv(common.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    probes = _counted_probes(monkeypatch)
    b = common.backend()
    for threads in (1, 2, 1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            common.machine_rates(b)
    blas = [p for p in __import__("threadpoolctl").threadpool_info() if p["user_api"] == "blas"]
    assert len(probes) == (6 if blas else 3)  # one cached probe per thread count
    files = list((tmp_path / "cache" / "softmax-bench-asv").iterdir())
    assert len(files) == len(probes) // 3
    if os.getuid() == 0:  # as root, the file can be given to another user
        os.chown(files[0], 12345, 12345)
        for threads in (1, 2):
            with threadpool_limits(limits=threads, user_api="blas"):
                common.machine_rates(b)
        assert len(probes) == (9 if blas else 6)  # the other user's file probed anew
