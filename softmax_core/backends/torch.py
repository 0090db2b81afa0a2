"""PyTorch on the CPU or the current CUDA device (through array-api-compat's namespace)."""

from __future__ import annotations

from .base import (
    GPU_ASKED,
    USE_CPU,
    Backend,
    BackendError,
    EventTimer,
    check_nvidia_driver,
    import_library,
)

INSTALL_HINT = "pip install 'softmax-bench[torch]' (in a clone: pip install -e '.[torch]')"


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, torch, device_kind, xp, device):
        super().__init__(device_kind, xp, device)
        self._torch = torch

    def synchronize(self) -> None:
        if self.is_gpu:
            self._torch.cuda.synchronize()

    def to_numpy(self, a):
        return a.detach().cpu().numpy()

    def timer(self):
        if not self.is_gpu:
            return super().timer()
        cuda = self._torch.cuda
        return EventTimer(
            lambda: cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b), cuda.synchronize
        )

    def _peak(self, fn, args):
        return cuda_peak(self._torch, fn, args) if self.is_gpu else None  # no CPU counter

    def free_memory_bytes(self) -> int:
        if not self.is_gpu:
            return super().free_memory_bytes()
        cuda = self._torch.cuda
        free, _ = cuda.mem_get_info()
        return int(free + cuda.memory_reserved() - cuda.memory_allocated())

    def _describe_device(self) -> dict:
        if not self.is_gpu:
            return {}
        cuda = self._torch.cuda
        free, total = cuda.mem_get_info()
        return {
            "gpu_name": cuda.get_device_name(),
            "gpu_memory_total_bytes": int(total),
            "gpu_memory_free_bytes": int(free),
            "cuda_runtime_version": self._torch.version.cuda,
        }


def cuda_peak(torch, fn, args) -> int:
    """The rise of torch's CUDA allocator's peak over the bytes in use before ``fn(*args)``."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    result = fn(*args)
    torch.cuda.synchronize()
    value = torch.cuda.max_memory_allocated() - base
    del result
    return int(value)


def make(device: str) -> TorchBackend:
    if device == "gpu":
        check_nvidia_driver()
    torch = import_library("torch", INSTALL_HINT)
    import array_api_compat.torch as xp

    if device == "cpu":
        return TorchBackend(torch, "cpu", xp, torch.device("cpu"))
    if not torch.cuda.is_available():
        raise BackendError(
            f"{GPU_ASKED} with torch, but torch sees no CUDA device; fix: install a CUDA build "
            f"of torch on a GPU machine, or {USE_CPU}"
        )
    return TorchBackend(torch, "gpu", xp, torch.device("cuda", torch.cuda.current_device()))
