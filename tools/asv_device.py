"""asv plugin of softmax-bench: the device, backend and suite of a run come from the shell.

``asv.conf.json`` loads it (``"plugins": [".tools.asv_device"]``; asv imports a plugin
whose name starts with ``.`` from the folder it runs in, so run asv from the repository
root).  It reads, in the shell that runs asv:

=====================  ==========================================================
``SOFTMAX_DEVICE``     ``cpu`` (default) or ``gpu``
``SOFTMAX_BACKEND``    optional: ``numpy``, ``cupy``, ``torch``, ``array_api_strict``
``SOFTMAX_ASV_SUITE``  ``default`` (default) or ``full`` (every grid point the guard
                       allows, the heavy ones included)
``SOFTMAX_THREADS``    optional: BLAS threads of the benchmarks (the CLI's
                       ``--threads``; default: the BLAS's own choice)
=====================  ==========================================================

and makes each of them an ``env_nobuild`` entry of every asv environment, as if the
config's matrix held exactly the one value the shell gives (``SOFTMAX_DEVICE`` always;
the others only when set to something other than their default).  So the values name the
environment and each result file (``<commit>-virtualenv-py3.11-SOFTMAX_DEVICEcpu.json``):
a CPU and a GPU run, or a default and a full one, of one commit never overwrite each other
and ``asv compare``/``publish`` keep them apart; asv sets them for the benchmark processes,
so a result's name and what was measured agree.  A virtualenv for a backend outside the
package's dependencies also installs that backend's library (:data:`REQUIREMENTS`).

asv has no hook for this, so :func:`setup` wraps ``asv.environment.Environment.__init__``
(the constructor every environment plugin calls with its requirements and tagged variables).
"""

from __future__ import annotations

import functools
import os

DEVICES = ("cpu", "gpu")
SUITES = ("default", "full")
DEFAULT_BACKEND = {"cpu": "numpy", "gpu": "cupy"}
#: The backends softmax-bench has (softmax_core.backends.BACKENDS; this plugin runs in asv's
#: own process, which need not have the package).
BACKENDS = ("numpy", "cupy", "torch", "array_api_strict", "dask")
#: What a virtualenv must install for a backend that is not a dependency of the package.
REQUIREMENTS = {"cupy": "cupy-cuda12x", "torch": "torch", "array_api_strict": "array-api-strict"}


class SelectionError(ValueError):
    """A variable holds a value this suite does not know."""


def selection(environ=None) -> dict[str, str]:
    """The variables that name a run: ``{"SOFTMAX_DEVICE": "cpu"}`` plus the others where set.

    Raises :class:`SelectionError` for an unknown device or suite, or a bad thread count.
    """
    environ = os.environ if environ is None else environ
    device = (environ.get("SOFTMAX_DEVICE") or "cpu").strip().lower()
    if device not in DEVICES:
        raise SelectionError(
            f"SOFTMAX_DEVICE={device!r} is not a device: use one of {', '.join(DEVICES)}"
        )
    chosen = {"SOFTMAX_DEVICE": device}
    backend = (environ.get("SOFTMAX_BACKEND") or "").strip().lower().replace("-", "_")
    if backend:
        if backend not in BACKENDS:
            raise SelectionError(
                f"SOFTMAX_BACKEND={backend!r} is not a backend: use one of {', '.join(BACKENDS)}"
            )
        chosen["SOFTMAX_BACKEND"] = backend
    suite = (environ.get("SOFTMAX_ASV_SUITE") or "default").strip().lower()
    if suite not in SUITES:
        raise SelectionError(
            f"SOFTMAX_ASV_SUITE={suite!r} is not a suite: use one of {', '.join(SUITES)}"
        )
    if suite != "default":
        chosen["SOFTMAX_ASV_SUITE"] = suite
    threads = (environ.get("SOFTMAX_THREADS") or "").strip()
    if threads:
        cores = os.cpu_count() or 1
        if not threads.isdecimal() or not 1 <= int(threads) <= cores:
            raise SelectionError(
                f"SOFTMAX_THREADS={threads!r} is not a thread count of this machine: use 1 to "
                f"{cores} (more threads than cores would time the scheduler, not the math)"
            )
        chosen["SOFTMAX_THREADS"] = str(int(threads))
    return chosen


def tag_environment(
    tool_name: str | None, requirements: dict, tagged_env_vars: dict, environ=None
) -> None:
    """Add the selection to one environment's requirements and variables, in place.

    In place because asv's environment classes keep a reference to the very
    ``requirements`` dict they pass on (a virtualenv's folder name is made from it).
    """
    chosen = selection(environ)
    for key, value in chosen.items():
        tagged_env_vars[("nobuild", key)] = value
    backend = chosen.get("SOFTMAX_BACKEND") or DEFAULT_BACKEND[chosen["SOFTMAX_DEVICE"]]
    package = REQUIREMENTS.get(backend)
    if package and tool_name != "existing":  # an existing environment installs nothing
        requirements.setdefault(package, "")


def setup() -> None:
    """Called by asv when it loads the plugin: wrap every environment's constructor once."""
    from asv import environment, util

    cls = environment.Environment
    if getattr(cls.__init__, "_softmax_bench", False):
        return
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, conf, python, requirements, tagged_env_vars):
        try:
            tag_environment(self.tool_name, requirements, tagged_env_vars)
        except SelectionError as exc:
            raise util.UserError(str(exc)) from None
        original(self, conf, python, requirements, tagged_env_vars)

    __init__._softmax_bench = True
    cls.__init__ = __init__
