"""Backend selection from arguments and SOFTMAX_DEVICE / SOFTMAX_BACKEND, and its errors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from softmax_core import Backend, BackendError, get_backend


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("SOFTMAX_DEVICE", raising=False)
    monkeypatch.delenv("SOFTMAX_BACKEND", raising=False)


def cupy_works() -> bool:
    try:
        get_backend("gpu", "cupy")
        return True
    except (BackendError, ValueError):
        return False


def fake_cupy(get_device_count, compute_capability="90") -> types.ModuleType:
    """A stand-in ``cupy`` module: only what get_backend touches before the driver answers."""
    mod = types.ModuleType("cupy")
    device = types.SimpleNamespace(compute_capability=compute_capability, id=0)
    mod.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count),
        Device=lambda *a: device,
    )
    return mod


# --------------------------------------------------------------------------- selection


def test_default_is_numpy_on_cpu():
    b = get_backend()
    assert isinstance(b, Backend)
    assert (b.name, b.device_kind, b.label, b.is_gpu) == ("numpy", "cpu", "numpy-cpu", False)
    assert b.xp.asarray([1.0]).__class__ is np.ndarray


def test_env_selects_backend(monkeypatch):
    monkeypatch.setenv("SOFTMAX_BACKEND", "array_api_strict")
    b = get_backend()
    assert (b.name, b.device_kind, b.label) == ("array_api_strict", "cpu", "array_api_strict-cpu")
    import array_api_strict

    assert b.xp is array_api_strict
    a = b.asarray(np.ones(2))
    assert type(a).__module__.startswith("array_api_strict")
    assert not isinstance(a, np.ndarray)


@pytest.mark.parametrize("spelling", ["array-api-strict", " Array_API_Strict ", "ARRAY_API_STRICT"])
def test_env_backend_spellings_are_normalized(monkeypatch, spelling):
    monkeypatch.setenv("SOFTMAX_BACKEND", spelling)
    assert get_backend().name == "array_api_strict"


def test_env_device_cpu_is_case_insensitive(monkeypatch):
    monkeypatch.setenv("SOFTMAX_DEVICE", " CPU ")
    assert get_backend().label == "numpy-cpu"


def test_arguments_override_environment(monkeypatch):
    monkeypatch.setenv("SOFTMAX_DEVICE", "gpu")
    monkeypatch.setenv("SOFTMAX_BACKEND", "nonsense")
    assert get_backend("cpu", "numpy").label == "numpy-cpu"


def test_empty_env_values_mean_default(monkeypatch):
    monkeypatch.setenv("SOFTMAX_DEVICE", "")
    monkeypatch.setenv("SOFTMAX_BACKEND", "")
    assert get_backend().label == "numpy-cpu"


@pytest.mark.parametrize("via_env", [True, False])
def test_unknown_device_names_variable_and_choices(monkeypatch, via_env):
    if via_env:
        monkeypatch.setenv("SOFTMAX_DEVICE", "tpu")
    with pytest.raises(
        ValueError, match=r"SOFTMAX_DEVICE='tpu' is not a device: use one of cpu, gpu"
    ):
        get_backend() if via_env else get_backend("tpu")


@pytest.mark.parametrize("via_env", [True, False])
def test_unknown_backend_names_variable_and_choices(monkeypatch, via_env):
    if via_env:
        monkeypatch.setenv("SOFTMAX_BACKEND", "nonsense")
    with pytest.raises(
        ValueError,
        match=r"SOFTMAX_BACKEND='nonsense' is not a backend: "
        r"use one of numpy, cupy, torch, array_api_strict",
    ):
        get_backend() if via_env else get_backend(None, "nonsense")


def test_numpy_on_gpu_is_a_value_error():
    with pytest.raises(ValueError, match="numpy runs on the CPU only"):
        get_backend("gpu", "numpy")


def test_array_api_strict_on_gpu_is_a_value_error():
    with pytest.raises(ValueError, match="CPU only"):
        get_backend("gpu", "array_api_strict")


def test_cupy_on_cpu_is_a_value_error():
    with pytest.raises(ValueError, match="cupy runs on the GPU only"):
        get_backend("cpu", "cupy")


def test_backend_error_is_a_runtime_error():
    assert issubclass(BackendError, RuntimeError)


# --------------------------------------------------------------------------- GPU unavailable


@pytest.fixture
def a_driver(monkeypatch, tmp_path):
    """This machine as one with an NVIDIA driver (its device file present), whatever it has."""
    from softmax_core.backends import base

    monkeypatch.setattr(base, "NVIDIA_DRIVER_FILES", (str(tmp_path),))


def test_gpu_here_without_cupy_says_how_to_install(monkeypatch, a_driver):
    if cupy_works():
        pytest.skip("cupy and a CUDA device work here")
    monkeypatch.setenv("SOFTMAX_DEVICE", "gpu")
    with pytest.raises(BackendError) as info:
        get_backend()
    msg = str(info.value)
    if "cupy" in sys.modules or _cupy_importable():
        assert "no usable CUDA device" in msg  # cupy installed, no GPU/driver
    else:
        assert "pip install" in msg and "softmax-bench[gpu]" in msg


def _cupy_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("cupy") is not None


def test_gpu_with_cupy_not_installed_says_pip_install(monkeypatch, a_driver):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    monkeypatch.setenv("SOFTMAX_DEVICE", "gpu")
    with pytest.raises(
        BackendError, match=r"cannot be imported.*fix: pip install 'softmax-bench\[gpu\]'"
    ):
        get_backend()


def test_cupy_installed_but_no_driver(monkeypatch, a_driver):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(no_device))
    monkeypatch.setenv("SOFTMAX_DEVICE", "gpu")
    with pytest.raises(BackendError) as info:
        get_backend()
    msg = str(info.value)
    assert "no usable CUDA device" in msg
    assert "cudaErrorNoDevice" in msg  # the driver's own words are kept
    assert "fix:" in msg and "SOFTMAX_DEVICE=cpu" in msg
    assert isinstance(info.value.__cause__, RuntimeError)


def test_cupy_installed_with_zero_devices(monkeypatch, a_driver):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(lambda: 0))
    with pytest.raises(BackendError, match="0 CUDA devices.*SOFTMAX_DEVICE=cpu"):
        get_backend("gpu", "cupy")


def test_torch_not_installed_says_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendError, match=r"fix: pip install 'softmax-bench\[torch\]'"):
        get_backend("cpu", "torch")


# --------------------------------------------------------------------------- Backend methods


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_asarray_to_numpy_round_trip(backend, xp, dtype):
    a = (np.arange(12).reshape(3, 4) * 1.5).astype(dtype)
    on = backend.asarray(a, dtype)
    assert on.dtype == getattr(xp, dtype)
    assert tuple(on.shape) == (3, 4)
    back = backend.to_numpy(on)
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, a)


def test_asarray_converts_dtype_and_accepts_lists(backend, xp):
    on = backend.asarray([[1, 2], [3, 4]], "float32")
    assert on.dtype == xp.float32
    np.testing.assert_array_equal(backend.to_numpy(on), np.array([[1, 2], [3, 4]], np.float32))
    assert backend.asarray(np.arange(3), xp.float64).dtype == xp.float64
    assert backend.asarray(np.arange(3)).dtype == xp.int64


def test_synchronize_returns(backend):
    assert backend.synchronize() is None


def test_describe(backend):
    info = backend.describe()
    assert info["backend"] == backend.name
    assert info["device"] == backend.device_kind
    assert info["label"] == backend.label
    if backend.name != "numpy":
        assert info[backend.name] == sys.modules[backend.name].__version__
    if backend.is_gpu:
        assert info["gpu_memory_total_bytes"] > 0


def test_environment_record_has_machine_blas_and_versions(backend):
    """The machine facts moved from describe() to the one environment record."""
    from softmax_core.measure.environment import blas_summary, record

    env = record(backend)
    assert env["backend"]["label"] == backend.label
    assert env["versions"]["numpy"] == np.__version__
    assert env["machine"]["cpu_cores_logical"] >= 1 and env["machine"]["memory_total_bytes"] > 0
    assert "threads" in blas_summary() or blas_summary() == "no BLAS loaded"


def test_environment_record_says_how_host_memory_behaves(tmp_path, monkeypatch):
    """Whether freed memory is kept while measuring, and whether the host takes freed pages back."""
    import platform

    from softmax_core.measure import host_memory
    from softmax_core.measure.environment import record
    from softmax_core.measure.session import MeasurementSession

    monkeypatch.setattr(host_memory, "PAGE_REPORTING", tmp_path)
    assert record()["machine"]["allocator"]["freed_memory_kept"] is False  # no session yet
    with MeasurementSession(get_backend("cpu", "numpy")):
        alloc = record(get_backend("cpu", "numpy"))["machine"]["allocator"]
    assert record()["machine"]["allocator"]["freed_memory_kept"] is False  # restored
    assert alloc["freed_memory_kept"] == (platform.libc_ver()[0] == "glibc")
    assert alloc["free_page_reporting"] is False
    (tmp_path / "page_reporting_order").write_text("9\n")
    assert record()["machine"]["allocator"]["free_page_reporting"] is True


def test_a_refused_mallopt_leaves_no_half_policy_and_is_not_recorded_as_kept(monkeypatch):
    from softmax_core.measure import host_memory

    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 0 if param == host_memory._M_TRIM_THRESHOLD else 1

    monkeypatch.setattr(host_memory, "_glibc", lambda: Libc())
    monkeypatch.setitem(host_memory._state, "retained", False)
    assert host_memory.retain_freed_memory() is False
    assert calls[-1] == (
        host_memory._M_MMAP_MAX,
        host_memory._DEFAULT_MMAP_MAX,
    )  # mmap allowed again
    assert host_memory.allocator()["freed_memory_kept"] is False
