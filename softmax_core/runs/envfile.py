"""A result set's ``environment.json`` (where the set was measured), defined once: written by
:func:`write_environment` and read by :func:`read_environment` only, its machine probe by
:func:`probe_rates` only.  It records the result format's version (see
:mod:`softmax_core.runs.resultformat`, whose history is its history too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError, quoted, said
from ..fileio import atomic_write_text
from ..measure.environment import record
from .resultformat import (
    COLUMNS,
    ENVIRONMENT_FILE,
    FORMAT_VERSION,
    _not_too_large,
    _regular_file,
)

#: The largest environment.json read (a sweep's is a few kB).
MAX_ENVIRONMENT_BYTES = 4 * 2**20


#: The parts of environment.json that are objects (the reader refuses other values for them).
OBJECT_KEYS = ("backend", "machine", "probe", "versions", "time_model", "parallelism", "grid")


def read_environment(folder: str | os.PathLike, fix: str) -> dict:
    """The JSON object in ``folder/environment.json``; {} if there is none; ValueError naming
    ``fix`` if it is unreadable, not an object, or of a newer format version."""
    path = Path(folder) / ENVIRONMENT_FILE
    if not path.exists():
        return {}
    _regular_file(path, "result set")
    _not_too_large(path, MAX_ENVIRONMENT_BYTES)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InputError(f"cannot read {path} ({str(exc)[:200]}); fix: {fix}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds a {type(data).__name__}, not an object; fix: {fix}")
    for key in OBJECT_KEYS:
        if key in data and not isinstance(data[key], dict):
            raise InputError(
                f"{path}: {key} is a {type(data[key]).__name__}, not an object; fix: {fix}"
            )
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{path} has format_version {version!r}, not a result format; fix: {fix}")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{path} is of result format {version}, newer than this softmax-bench's "
            f"{FORMAT_VERSION}; fix: upgrade softmax-bench"
        )
    return data


def write_environment(folder: str | os.PathLike, env: dict) -> None:
    """``folder/environment.json``, written whole or not at all, with this format version."""
    env = {**env, "format_version": FORMAT_VERSION, "columns": list(COLUMNS)}
    atomic_write_text(
        Path(folder) / ENVIRONMENT_FILE, json.dumps(env, indent=2, default=str) + "\n"
    )


def probe_rates(env: dict) -> tuple[float, float, int] | None:
    """(GEMM rate, copy bandwidth, probe version) of an environment record, or None where
    it has no usable probe."""
    try:
        probe = env["probe"]
        raw = [probe["gemm_gflops"], probe["copy_gbps"]]
        version = probe.get("probe_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            return None
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw):
            return None
        rates = [float(v) for v in raw]  # an integer too large for a float raises OverflowError
    except (KeyError, TypeError, AttributeError, OverflowError):
        return None
    # a rate must be a number whose ratio to another one is a number
    if not all(1e-30 < v < 1e30 for v in rates):
        return None
    return rates[0], rates[1], version


#: The grid's settings that environment.json keeps, so that ``sweep --resume`` measures the
#: grid the run began with: ``sweep``'s options, as Grid's fields (and ``rounds`` beside them).
GRID_RECORD = (
    "methods",
    "batches",
    "classes",
    "features",
    "dtype",
    "epochs_on",
    "time_budget_s",
    "threads",
)


#: The facts that make rows one run's: where they ran, and with what code (a resume elsewhere,
#: or after a checkout, an edit or an upgrade, would pool two runs' rows as one).
SAME_RUN = (
    ("machine", "cpu_model"),
    ("machine", "cpu_cores_logical"),
    ("git_commit",),
    ("git_changes",),
)
#: The libraries a run computes with (their versions make it another run): these on every
#: backend, and the backend's own; not those that draw and report (pandas, matplotlib, asv).
COMPUTING = ("python", "numpy", "softmax-bench", "array-api-compat")
BACKEND_LIBRARIES = {
    "array_api_strict": ("array-api-strict",),
    "torch": ("torch",),
    "cupy": ("cupy", "cupy-cuda11x", "cupy-cuda12x", "cupy-cuda13x"),
    "dask": ("dask",),
}


#: What a difference says of a fact this process cannot tell.
NOT_KNOWN = "not known"


def run_differences(recorded: dict, now: dict) -> list[str]:
    """What differs between a run's environment record and ``now`` (this process's): the
    :data:`SAME_RUN` facts and the versions of the libraries the run computes with
    (:data:`COMPUTING`, :data:`BACKEND_LIBRARIES`); [] for the same run."""
    differ = []
    for path in SAME_RUN:  # a fact known on one side only is no match either; the code's
        a, b = (_at(env, path) for env in (recorded, now))  # recorded as not known, too
        known = a is not None or (path[0].startswith("git_") and path[0] in recorded)
        if known and a != b:
            differ.append(f"{'.'.join(path)} {_known(a)}, here {_known(b)}")
    va, vb = (env.get("versions") or {} for env in (recorded, now))
    own = BACKEND_LIBRARIES.get(str(_at(recorded, ("backend", "backend"))), ())
    both = sorted(set(va) & set(vb) & {*COMPUTING, *own})
    return differ + [f"{n} {_shown(va[n])}, here {_shown(vb[n])}" for n in both if va[n] != vb[n]]


def _at(env: dict, path: tuple):
    for key in path:
        env = env.get(key) if isinstance(env, dict) else None
    return env


def _known(value) -> str:
    return NOT_KNOWN if value is None else _shown(value)


def _shown(value) -> str:
    """A recorded value in one short line: quoted where it is text, cut past 60 characters."""
    return quoted(value, 58) if isinstance(value, str) else said(value, 60)


def check_same_machine(out: Path, env: dict, backend) -> None:
    """InputError where the run recorded in ``env`` ran on another machine, with other computing
    libraries or at another commit than this process would: its rows and new ones are two runs."""
    changed = run_differences(env, record(backend)) if env else []
    if changed:
        raise InputError(
            f"{out} is a run measured elsewhere or with other code ({'; '.join(changed[:3])}); "
            f"fix: {_resume_fix(env, changed)}, or choose another --out"
        )


def _resume_fix(env: dict, changed: list[str]) -> str:
    """How to resume a run whose code differs from this process's: its commit, with the
    uncommitted changes it began with."""
    elsewhere = not all(c.startswith("git_") for c in changed)
    # or git could not tell the code it began with
    if elsewhere or env.get("git_commit") is None or any(f" {NOT_KNOWN}," in c for c in changed):
        return "resume it where it began"
    if any(c.endswith(NOT_KNOWN) for c in changed):
        return "resume it in the checkout it began in, with git on PATH"
    changes = env.get("git_changes")  # "none", a digest, or not recorded
    how = " with the uncommitted changes it began with" if changes is not None else ""
    how = " with no uncommitted changes" if changes == "none" else how
    if any(c.startswith("git_commit") for c in changed):
        return f"git checkout {str(env.get('git_commit'))[:12]}, and resume it{how}"
    return f"resume it{how}"


def blas_pools(env: dict) -> list[dict]:
    """The BLAS thread pools of an environment record (threadpoolctl's view of each); [] where
    it has none, or holds something else."""
    pools = env.get("blas")
    if not isinstance(pools, list):
        return []
    return [p for p in pools if isinstance(p, dict) and p.get("user_api") == "blas"]


__all__ = [
    "GRID_RECORD",
    "read_environment",
    "write_environment",
    "probe_rates",
    "blas_pools",
    "run_differences",
    "check_same_machine",
    "OBJECT_KEYS",
]
