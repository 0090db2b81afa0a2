"""The measuring loop: statistics, states (cold, warm-up, loops), convergence, device timers."""

import gc
import math
import os
import platform
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from softmax_core import get_backend
from softmax_core.backends import EventTimer, PeakCounter
from softmax_core.measure.alternating import measure_side_by_side
from softmax_core.measure.engine import (
    Measurement,
    measure,
    median_ci,
    probe_machine,
    time_once,
)


@pytest.fixture
def cpu():
    return get_backend("cpu", "numpy")


# --------------------------------------------------------------------------- statistics


def _binom_coverage(n, lo_rank):
    """P(x_(lo) <= median <= x_(n+1-lo)) for a continuous distribution."""
    below = sum(math.comb(n, j) for j in range(lo_rank)) / 2**n
    return 1 - 2 * below


@pytest.mark.parametrize("n", [6, 10, 20, 50, 200])
def test_median_ci_is_the_tightest_order_statistic_interval_with_95_percent(n):
    x = np.arange(1.0, n + 1)
    lo, hi = median_ci(x)
    rank = int(lo)  # x_(r) == r here
    assert hi == n + 1 - rank
    assert _binom_coverage(n, rank) >= 0.95
    assert _binom_coverage(n, rank + 1) < 0.95  # one rank further in would drop below 95%


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        lo, hi = median_ci(rng.lognormal(size=25))  # true median exp(0) = 1
        hits += lo <= 1.0 <= hi
    assert 0.94 <= hits / 2000 <= 0.995


def test_median_ci_small_samples():
    assert median_ci([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)  # below 6 samples: [min, max]
    assert all(math.isnan(v) for v in median_ci([1.0]))


def test_measurement_statistics_and_stability():
    m = Measurement.from_samples([1.0] * 10 + [1.01] * 10)
    assert m.median == pytest.approx(1.005)
    assert m.stable and m.rel_ci < 0.02
    noisy = Measurement.from_samples([1.0, 2.0, 0.5, 3.0, 1.5, 0.7, 2.5])
    assert not noisy.stable
    row = noisy.row()
    assert row["time_ci_low_s"] <= row["time_median_s"] <= row["time_ci_high_s"]
    assert row["stable"] is False and row["repeats"] == 7


def test_pooled_rounds_keep_every_sample():
    a = Measurement.from_samples([1.0, 1.1], loops=10, first_s=5.0)
    b = Measurement.from_samples([0.9, 1.0, 1.2], loops=20, first_s=4.0)
    p = a.pooled(b)
    assert p.repeats == 5 and p.rounds == 2 and p.loops == 20 and p.first_s == 5.0


# --------------------------------------------------------------------------- the loop


def test_measure_converges_on_a_steady_call_and_reports_its_cost(cpu):
    m = measure(time.sleep, 0.002, backend=cpu, max_time_s=5)
    assert not m.capped and m.rel_ci <= 0.02  # stable too, unless other processes load the machine
    assert 0.002 <= m.ci[0] <= m.median <= m.ci[1] < 0.004
    assert m.repeats >= 5
    assert m.first_s is not None


def test_short_calls_are_looped_within_a_sample(cpu):
    m = measure(lambda: None, backend=cpu, min_sample_s=1e-3, max_time_s=0.3)
    assert m.loops >= 100  # one call is well under a microsecond
    assert m.median < 1e-5  # the per-call time, not the sample's


def test_noisy_call_is_capped_and_flagged_unstable(cpu):
    rng = np.random.default_rng(0)
    m = measure(
        lambda: time.sleep(rng.choice([0.001, 0.004])), backend=cpu, max_time_s=0.15, min_sample_s=0
    )
    assert m.capped and not m.stable


def test_min_samples_are_taken_even_past_the_time_cap(cpu):
    m = measure(time.sleep, 0.02, backend=cpu, min_samples=5, max_time_s=0.001, target=0.5)
    assert m.repeats == 5


def test_warm_up_reaches_the_steady_state_before_sampling(cpu):
    calls = []

    def slow_at_first():
        calls.append(1)
        time.sleep(0.05 if len(calls) <= 3 else 0.002)  # three cold calls, then steady

    m = measure(slow_at_first, backend=cpu, max_time_s=2)
    assert m.first_s >= 0.05
    # no cold call among the samples (a 2 ms sleep may overrun by some ms on a busy machine)
    assert max(m.times_s) < 0.03


def test_settle_multiplies_once_per_process_and_backend(cpu, monkeypatch):
    """OpenBLAS runs some shapes 2x slower until it has done a square matmul (Backend.settle)."""
    from softmax_core.backends import base as backend_module

    monkeypatch.setattr(backend_module, "_SETTLED", set())
    shapes = []
    real = cpu.xp.matmul
    monkeypatch.setattr(
        cpu.xp, "matmul", lambda a, b: shapes.append((a.shape, a.dtype)) or real(a, b)
    )
    cpu.settle()
    cpu.settle()
    size = backend_module.SETTLE_MATMUL_SIZE
    assert size >= 384 and shapes == [((size, size), np.dtype("float32"))]
    assert backend_module._SETTLED == {"numpy-cpu"}


_FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from softmax_core.backends import get_backend
from softmax_core.measure.session import MeasurementSession
if sys.argv[1] == "session":
    MeasurementSession(get_backend("cpu", "numpy")).__enter__()
def call():  # allocates and writes 64 MB, as the naive Jacobian does its gigabytes
    np.ones(2**24, dtype=np.float32)
call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    call()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator policy is glibc's")
def test_settled_cpu_process_reuses_the_memory_a_call_frees():
    """Fresh pages cost what the kernel and a VM's host make them cost, at random
    (host_memory): in a measurement session a call that allocates finds its memory mapped."""

    def faults(mode):
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_SCRIPT, mode],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return int(out.stdout.split()[-1])

    # 64 MB of fresh pages a call: 32 huge pages or 16384 small ones, each faulted in
    assert faults("plain") >= 5 * 32
    assert faults("session") < 16


_ROOM_SCRIPT = """
import numpy as np, psutil
from softmax_core.backends import get_backend
from softmax_core.measure.host_memory import make_room
from softmax_core.measure.session import MeasurementSession
MeasurementSession(get_backend("cpu", "numpy")).__enter__()
rss = lambda: psutil.Process().memory_info().rss
np.ones(2**26, dtype=np.float32)  # 256 MB, freed and kept
kept = rss()
within = make_room(need_bytes=1, budget_bytes=kept + 2**20)
after_within = rss()
beyond = make_room(need_bytes=2**20, budget_bytes=kept)
print(within, beyond, kept - after_within, kept - rss())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator policy is glibc's")
def test_kept_memory_is_handed_back_only_when_a_point_could_pass_the_budget():
    out = subprocess.run(
        [sys.executable, "-c", _ROOM_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    within, beyond, freed_within, freed_beyond = out[0], out[1], int(out[2]), int(out[3])
    assert within == "False" and freed_within < 2**24
    assert beyond == "True" and freed_beyond > 2**27


def test_make_room_is_a_no_op_where_memory_is_not_kept(monkeypatch):
    from softmax_core.measure import host_memory

    monkeypatch.setitem(host_memory._state, "retained", False)
    assert host_memory.make_room(10**15, 1) is False


@pytest.mark.parametrize("entry", ["measure", "side_by_side", "time_once"])
def test_every_timing_entry_settles_the_backend_before_the_first_call(cpu, monkeypatch, entry):
    from softmax_core.backends import Backend

    events = []
    monkeypatch.setattr(Backend, "settle", lambda self: events.append("settle"))

    def call():
        events.append("call")

    if entry == "measure":
        measure(call, backend=cpu, min_samples=2, max_time_s=0.01, min_time_s=0.0)
    elif entry == "side_by_side":
        measure_side_by_side({"a": (call, ())}, backend=cpu, min_rounds=2, max_time_s=0.01)
    else:
        time_once(call, backend=cpu)
    assert events[0] == "settle" and "call" in events


def test_garbage_collection_is_off_while_sampling(cpu):
    seen = []
    measure(lambda: seen.append(gc.isenabled()), backend=cpu, max_time_s=0.05)
    assert gc.isenabled() and not any(seen)


def test_side_by_side_alternates_and_gives_paired_ratios(cpu):
    order = []
    sb = measure_side_by_side(
        {
            "fast": (lambda: (order.append("f"), time.sleep(0.001)), ()),
            "slow": (lambda: (order.append("s"), time.sleep(0.003)), ()),
        },
        backend=cpu,
        min_rounds=7,
        max_time_s=2,
        min_sample_s=0,
    )
    ratio = sb.ratio("slow", "fast")
    assert 2.0 < ratio.median < 3.5
    assert sb.measurements["fast"].repeats == sb.measurements["slow"].repeats >= 7
    sampled = "".join(order[-4:])
    assert sampled in ("fssf", "sffs")  # the order reverses every round


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(min_samples=0),
        dict(max_time_s=-1),
        dict(max_time_s=math.inf),
        dict(min_samples=5, max_samples=2),
        dict(target=0),
        dict(target=1.5),
        dict(warmup_s=float("nan")),
    ],
)
def test_measure_rejects_bad_arguments(cpu, kwargs):
    with pytest.raises(ValueError):
        measure(lambda: None, backend=cpu, **kwargs)


def test_measure_rejects_non_callable(cpu):
    with pytest.raises(TypeError, match="callable"):
        measure(42, backend=cpu)


def test_time_once_returns_the_result_and_its_time(cpu):
    result, seconds = time_once(lambda x: (time.sleep(0.01), x)[1], 7, backend=cpu)
    assert result == 7 and 0.01 <= seconds < 0.1


# --------------------------------------------------------------------------- device timers


class _FakeEvent:
    """A stand-in CUDA event: records the host clock, as a stream would at that point."""

    def __init__(self, log):
        self.log, self.t = log, None

    def record(self):
        self.t = time.perf_counter()
        self.log.append("record")

    def synchronize(self):
        self.log.append("event-sync")


def test_event_timer_syncs_first_records_around_the_calls_and_reads_device_time():
    log = []
    timer = EventTimer(
        lambda: _FakeEvent(log),
        lambda a, b: (b.t - a.t) * 1e3 + 5.0,
        lambda: log.append("stream-sync"),
    )
    timer.start()
    time.sleep(0.01)
    host, device = timer.stop()
    assert log == ["stream-sync", "record", "record", "event-sync"]
    assert host >= 0.01
    assert device == pytest.approx(host + 0.005, abs=0.003)  # elapsed_ms is milliseconds


def test_measure_counts_device_time_on_a_gpu_backend(cpu):
    """A backend whose timer reports device time: the samples are device times, host kept beside."""
    import copy

    log = []
    gpu_like = copy.copy(cpu)
    gpu_like.device_kind = "gpu"
    gpu_like.timer = lambda: EventTimer(lambda: _FakeEvent(log), lambda a, b: 1.0, lambda: None)
    m = measure(time.sleep, 0.001, backend=gpu_like, max_time_s=0.5, min_sample_s=0)
    assert m.median == pytest.approx(1e-3 / m.loops)  # 1 ms of "device" time per sample
    assert m.host_times_s is not None and m.host_median >= 0.001


def test_peak_counter_arithmetic():
    c = PeakCounter()
    c.malloc(100)
    c.malloc(50)
    c.free(100)
    c.malloc(20)
    assert (c.current, c.peak) == (70, 150)


# --------------------------------------------------------------------------- memory, probe


def test_peak_memory_sees_a_numpy_allocation(cpu):
    nbytes = 50 * 2**20
    measured = cpu.peak_bytes(lambda: np.ones(nbytes // 8))
    assert measured == pytest.approx(nbytes, rel=0.02)


def test_peak_memory_counts_temporaries_not_just_the_result(cpu):
    def two_temporaries():
        a = np.ones(2**20)  # 8 MiB
        b = a * 2  # 8 MiB more, alive with a
        return float(b[0])  # returns a scalar: the peak was 16 MiB

    assert cpu.peak_bytes(two_temporaries) == pytest.approx(2 * 8 * 2**20, rel=0.02)


def test_peak_memory_under_array_api_strict():
    strict = get_backend("cpu", "array_api_strict")
    measured = strict.peak_bytes(lambda: strict.xp.ones(2**20, dtype=strict.xp.float64))
    assert measured == pytest.approx(8 * 2**20, rel=0.05)


def test_probe_machine_reports_positive_rates(cpu):
    p = probe_machine(cpu, gemm_size=256, copy_bytes=2**22)
    assert p["gemm_gflops"] > 0.1
    assert p["copy_gbps"] > 0.1


def test_a_point_measured_while_another_process_holds_a_core_is_not_stable(cpu):
    """A tight interval under load is a number for a busier machine: flagged, not trusted."""
    import subprocess
    import sys

    # started through a shell that exits at once: the spinner is no child of this process
    spin = f"{sys.executable} -c '{_SPIN}' >/dev/null 2>&1 & echo $!"
    pid = int(subprocess.run(["sh", "-c", spin], capture_output=True, text=True).stdout)
    try:
        time.sleep(0.3)  # let it start spinning
        m = measure(time.sleep, 0.002, backend=cpu, max_time_s=0.5, min_sample_s=0)
    finally:
        os.kill(pid, signal.SIGKILL)
    cores = __import__("psutil").cpu_count()
    assert m.others_cpu >= 0.6 / cores  # most of one core went to the other process
    assert m.contended and not m.stable
    assert m.row()["others_cpu"] == m.others_cpu


_SPIN = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"


def test_the_work_of_processes_it_started_is_not_another_process():
    """A LocalCluster's workers compute the calls of the process that started them: their CPU
    seconds count as the measurement's own (read while they run), not as contention."""
    import subprocess
    import sys

    from softmax_core.measure import cpuwatch

    spin_then_wait = "import time\nend = time.process_time() + 0.5\n"
    spin_then_wait += "while time.process_time() < end: pass\ntime.sleep(30)"
    watch = cpuwatch.OthersCPU()
    own = watch._own_seconds()
    child = subprocess.Popen([sys.executable, "-c", spin_then_wait])
    try:
        deadline = time.monotonic() + 20
        while watch._own_seconds() - own < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watch._own_seconds() - own >= 0.5  # the child's half second of CPU is ours
    finally:
        child.kill()
        child.wait()


def test_contention_is_averaged_over_pooled_rounds():
    quiet = Measurement.from_samples([1.0] * 10, others_cpu=0.0)
    busy = Measurement.from_samples([1.0] * 10, others_cpu=0.5)
    assert quiet.stable and not busy.stable
    assert quiet.pooled(busy).others_cpu == pytest.approx(0.25)


# ----------------------------------------------------------------- drift and the counters' ticks


def test_a_drift_late_in_the_samples_widens_the_interval():
    """Back-to-back samples of one speed give a tight interval even when the speed then
    changes; the medians of chronological blocks show the change (seen on the 2-core VM:
    one call at 1.2 ms for a second, then at 2.1 ms)."""
    times = [1.0 + 1e-4 * (i % 7) for i in range(800)] + [1.3 + 1e-4 * (i % 5) for i in range(200)]
    m = Measurement.from_samples(times)
    samples_only = median_ci(times)
    assert samples_only[1] < 1.01  # the samples alone: tight around 1.0
    assert m.ci[1] >= 1.3 and not m.stable  # the blocks: the late 1.3 is inside


def test_rounds_that_disagree_are_not_stable_whatever_their_sample_counts():
    fast = Measurement.from_samples(
        [1.0] * 300
    )  # one round caught the machine fast, with many samples
    slow = Measurement.from_samples([2.0] * 20)
    p = fast.pooled(slow).pooled(slow)
    assert median_ci(p.times_s) == (1.0, 1.0)  # the pooled samples alone would hide the slow rounds
    assert p.ci == (1.0, 2.0) and not p.stable
    same = fast.pooled(Measurement.from_samples([1.0] * 20))
    assert same.stable and same.ci == (1.0, 1.0)


def test_steady_samples_keep_a_tight_interval():
    rng = np.random.default_rng(1)
    m = Measurement.from_samples(1.0 + 0.01 * rng.standard_normal(2000))
    assert m.rel_ci < 0.005 and m.stable


def test_sampling_spans_at_least_min_time(cpu):
    start = time.perf_counter()
    m = measure(lambda: None, backend=cpu, min_time_s=0.3, max_time_s=0.5)
    assert time.perf_counter() - start >= 0.3
    assert sum(m.times_s) * m.loops >= 0.25  # the samples themselves cover it
    quick = measure(lambda: None, backend=cpu, min_time_s=0.3, max_time_s=0.05)
    assert quick.repeats >= 5  # capped by max_time_s, not stuck


def test_one_stray_tick_of_the_cpu_counters_is_not_contention(monkeypatch):
    """Over a 30 ms window, one 10 ms tick the kernel counted elsewhere is 17% of a
    2-core machine: the counters' resolution, not another process."""
    from softmax_core.measure import cpuwatch

    watch = cpuwatch.OthersCPU()
    watch._cores = 2
    watch._start = (0.0, 100.0, 50.0)
    monkeypatch.setattr(watch, "_read", lambda: (0.03, 100.05, 50.04))  # 10 ms more busy than ours
    assert watch.reading()[0] == 0.0
    monkeypatch.setattr(
        watch, "_read", lambda: (0.5, 100.9, 50.4)
    )  # a core busy elsewhere half the time
    assert watch.reading()[0] >= 0.2


def test_a_later_round_of_a_long_call_may_skip_the_warm_up(cpu):
    calls = []
    m = measure(
        lambda: calls.append(1),
        backend=cpu,
        cold=False,
        warm_up=False,
        min_samples=3,
        min_sample_s=0,
        max_time_s=0,
        min_time_s=0,
    )
    assert m.repeats == 3 and len(calls) == 3 and m.first_s is None  # every call is a sample
    with pytest.raises(ValueError, match="warm_up=False needs cold=False"):
        measure(lambda: None, backend=cpu, warm_up=False)


def test_short_rounds_add_up_their_cpu_seconds_before_the_slack():
    """Three 70 ms rounds of a 3-round sweep, each with another process on 10% of the machine:
    per round the two forgiven ticks swallow it; added up, it shows."""
    from softmax_core.measure.stats import others_share

    one = Measurement.from_samples(
        [1.0] * 10, others_cpu=others_share((0.05, 0.14, 0.04)), others_raw_s=(0.05, 0.14, 0.04)
    )
    assert one.others_cpu < 0.1
    pooled = one.pooled(one).pooled(one)
    assert pooled.others_cpu == pytest.approx((0.15 - 0.04) / 0.42) and pooled.contended


def test_fewer_than_five_samples_are_never_stable():
    assert not Measurement.from_samples([1.0, 1.01]).stable  # [min, max] of 2: a 50% interval
    assert Measurement.from_samples([1.0, 1.01, 1.0, 1.01, 1.0]).stable


def test_measure_takes_numpy_scalars_and_refuses_non_bool_flags(cpu):
    m = measure(
        lambda: None,
        backend=cpu,
        min_time_s=np.float32(0.01),
        max_time_s=np.float64(0.05),
        target=np.float32(0.5),
    )
    assert m.repeats >= 5
    for bad in ({"cold": None}, {"warm_up": "no", "cold": False}):
        with pytest.raises(TypeError, match="must be True or False"):
            measure(lambda: None, backend=cpu, **bad)


def test_the_commit_recorded_is_of_a_checkout_that_tracks_the_code(tmp_path):
    """A package installed into a virtual environment inside someone's repository is not that
    repository's code: no commit is recorded for a folder git does not track."""
    import subprocess

    from softmax_core.measure.environment import git_commit

    def git(*argv):
        subprocess.run(["git", *argv], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "notes.txt").write_text("a user's project\n")
    git("add", "notes.txt")
    git("-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "notes")
    site = tmp_path / ".venv" / "site-packages" / "softmax_core"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    assert git_commit(site) is None
    assert git_commit(tmp_path) is not None and len(git_commit(tmp_path)) == 40


def test_the_uncommitted_changes_recorded_tell_edits_apart(tmp_path):
    """A run resumed after an edit without a commit is another run: the record's digest of the
    uncommitted changes is "none" for a clean checkout, the same for the same edits, and
    another for other edits or a new untracked file."""
    import subprocess

    from softmax_core.measure.environment import git_changes

    def git(*argv):
        subprocess.run(["git", *argv], cwd=tmp_path, check=True, capture_output=True)

    assert git_changes(tmp_path) is None  # no checkout
    git("init", "-q")
    (tmp_path / "sgd.py").write_text("lr = 0.1\n")
    git("add", "sgd.py")
    git("-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "sgd")
    assert git_changes(tmp_path) == "none"
    (tmp_path / "sgd.py").write_text("lr = 0.2\n")
    edited = git_changes(tmp_path)
    assert edited.startswith("sha256:") and len(edited) == 19 and git_changes(tmp_path) == edited
    (tmp_path / "sgd.py").write_text("lr = 0.3\n")
    assert git_changes(tmp_path) not in (edited, "none")
    (tmp_path / "sgd.py").write_text("lr = 0.1\n")
    (tmp_path / "new.py").write_text("x = 1\n")
    untracked = git_changes(tmp_path)
    assert untracked not in (edited, "none")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")  # a dangling link, a repository inside
    (tmp_path / "inner" / ".git").mkdir(parents=True)
    assert git_changes(tmp_path) not in (untracked, None)


def test_the_uncommitted_changes_are_the_whole_packages(tmp_path, monkeypatch):
    """The digest covers every module of the package, not only the folder of the module that
    takes it."""
    import subprocess

    from softmax_core.measure import environment

    package = tmp_path / "softmax_core"
    (package / "measure").mkdir(parents=True)
    (package / "model.py").write_text("lr = 0.1\n")
    for argv in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "code"],
    ):
        subprocess.run(["git", *argv], cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.setattr(environment, "__file__", str(package / "measure" / "environment.py"))
    assert environment.git_changes() == "none"
    (package / "model.py").write_text("lr = 0.2\n")
    assert environment.git_changes().startswith("sha256:")


@pytest.mark.parametrize("hang", ["exec sleep 30", "exec >&-; sleep 30"])  # output open, closed
def test_git_that_says_nothing_past_its_time_leaves_the_changes_not_known(
    tmp_path, monkeypatch, hang
):
    """A git that hangs, its output open or closed, is given up at the deadline: the changes are
    not known (and a resume that recorded them is refused), the command does not wait for git."""
    import os
    import time

    from softmax_core.measure import environment

    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{hang}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(environment, "GIT_TIMEOUT_S", 0.5)
    start = time.monotonic()
    assert environment.git_changes(tmp_path) is None
    assert time.monotonic() - start < 5
