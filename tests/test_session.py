"""The measurement session owns the process state a measurement changes, and restores it."""

from __future__ import annotations

import platform

import pytest
from threadpoolctl import threadpool_info

from softmax_core.backends import Backend, get_backend
from softmax_core.cli import main
from softmax_core.measure import host_memory
from softmax_core.measure.engine import measure
from softmax_core.measure.session import MeasurementSession, active

GLIBC = platform.libc_ver()[0] == "glibc"


def _threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info()]


def test_a_session_limits_blas_threads_and_restores_them():
    cpu = get_backend("cpu", "numpy")
    before = _threads()
    with MeasurementSession(cpu, threads=1):
        assert set(_threads()) <= {1}
    assert _threads() == before


@pytest.mark.skipif(not GLIBC, reason="the allocator policy is glibc's")
def test_a_session_keeps_freed_memory_while_open_and_restores_glibcs_defaults():
    cpu = get_backend("cpu", "numpy")
    assert host_memory.allocator()["freed_memory_kept"] is False
    with MeasurementSession(cpu) as outer:
        assert host_memory.allocator()["freed_memory_kept"] is True
        with MeasurementSession(cpu):  # nested: the outer one owns the policy
            pass
        assert host_memory.allocator()["freed_memory_kept"] is True
        assert active(cpu) is outer
    assert host_memory.allocator()["freed_memory_kept"] is False and active() is None


@pytest.mark.skipif(not GLIBC, reason="the allocator policy is glibc's")
def test_measure_outside_a_session_takes_one_for_itself_and_leaves_nothing_changed():
    cpu = get_backend("cpu", "numpy")
    seen = []
    measure(
        lambda: seen.append(host_memory.allocator()["freed_memory_kept"]),
        backend=cpu,
        min_samples=2,
        max_time_s=0.01,
        min_time_s=0.0,
    )
    assert seen and all(seen)
    assert host_memory.allocator()["freed_memory_kept"] is False


def test_a_session_restores_state_when_its_block_raises():
    cpu = get_backend("cpu", "numpy")
    before = _threads()
    with pytest.raises(RuntimeError), MeasurementSession(cpu, threads=1):
        raise RuntimeError("boom")
    assert _threads() == before and active() is None


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_a_session_refuses_a_thread_count_that_is_not_one(threads):
    with pytest.raises(ValueError, match="threads"):
        MeasurementSession(get_backend("cpu", "numpy"), threads=threads)


def test_info_reports_and_changes_nothing(monkeypatch, capsys):
    settled = []
    monkeypatch.setattr(Backend, "settle", lambda self: settled.append(self.label))
    kept = dict(host_memory._state)
    before = _threads()
    assert main(["info", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "numpy-cpu" in out
    assert settled == [] and host_memory._state == kept and _threads() == before


def test_a_session_opened_twice_is_refused_and_one_never_opened_closes_quietly():
    cpu = get_backend("cpu", "numpy")
    before = _threads()
    session = MeasurementSession(cpu, threads=1)
    with session, pytest.raises(RuntimeError, match="open already"):
        session.__enter__()
    assert _threads() == before and active() is None
    MeasurementSession(cpu).__exit__(None, None, None)
