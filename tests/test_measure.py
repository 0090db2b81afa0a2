"""Timing and memory measurement."""

import time

import numpy as np
import pytest

from softmax_core import get_backend
from softmax_core.measure import TimingResult, peak_memory, probe_machine, time_call


@pytest.fixture
def cpu():
    return get_backend("cpu", "numpy")


def test_time_call_meets_min_repeats_and_budget(cpu):
    r = time_call(time.sleep, 0.002, backend=cpu, warmup=1, min_repeats=3, time_budget_s=0.03)
    assert r.repeats >= 3
    assert sum(r.host_s) >= 0.03
    assert 0.002 <= r.min <= r.median
    assert r.device_s is None  # no CUDA events on the CPU


def test_time_call_stops_at_max_repeats(cpu):
    r = time_call(lambda: None, backend=cpu, min_repeats=2, max_repeats=5, time_budget_s=10)
    assert r.repeats == 5


def test_timing_statistics():
    r = TimingResult(host_s=(1.0, 2.0, 3.0, 4.0, 100.0))
    assert r.median == 3.0
    assert r.min == 1.0
    assert r.iqr == pytest.approx(2.0)
    assert r.repeats == 5


@pytest.mark.parametrize("kwargs", [dict(min_repeats=0), dict(warmup=-1), dict(time_budget_s=-1),
                                    dict(min_repeats=5, max_repeats=2)])
def test_time_call_rejects_bad_arguments(cpu, kwargs):
    with pytest.raises(ValueError):
        time_call(lambda: None, backend=cpu, **kwargs)


def test_time_call_rejects_non_callable(cpu):
    with pytest.raises(TypeError, match="callable"):
        time_call(42, backend=cpu)


def test_peak_memory_sees_a_numpy_allocation(cpu):
    nbytes = 50 * 2**20
    measured = peak_memory(lambda: np.ones(nbytes // 8), backend=cpu)
    assert measured == pytest.approx(nbytes, rel=0.02)


def test_peak_memory_counts_temporaries_not_just_the_result(cpu):
    def two_temporaries():
        a = np.ones(2**20)          # 8 MiB
        b = a * 2                   # 8 MiB more, alive with a
        return float(b[0])          # returns a scalar: the peak was 16 MiB

    assert peak_memory(two_temporaries, backend=cpu) == pytest.approx(2 * 8 * 2**20, rel=0.02)


def test_peak_memory_under_array_api_strict():
    strict = get_backend("cpu", "array_api_strict")
    measured = peak_memory(lambda: strict.xp.ones(2**20, dtype=strict.xp.float64), backend=strict)
    assert measured == pytest.approx(8 * 2**20, rel=0.05)


def test_probe_machine_reports_positive_rates(cpu):
    p = probe_machine(cpu, gemm_size=256, copy_bytes=2**22)
    assert p["gemm_gflops"] > 0.1
    assert p["copy_gbps"] > 0.1
