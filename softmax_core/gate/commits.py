"""The commits a gate compares: named by git, each exported once into a cache.

A commit's environment is its own source tree (``softmax_core`` and ``pyproject.toml``, from
``git archive``) run by this interpreter with this environment's packages, as ``asv run
--python=same`` runs a commit: the two sides differ in their code only.  A commit that needs a
package this environment lacks (its ``pyproject.toml`` says which) is refused in one line that
says what to install.  Exported trees are kept by commit hash under the cache folder
(:data:`KEEP` at most, the least recently used go first; nothing else there is touched), so a
second gate of the same commits starts at once.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dependency check is left to the import
    tomllib = None

#: Exported commits kept in the cache.
KEEP = 16
#: The most bytes one commit's export may take (the package is well under a megabyte).
MAX_EXPORT_BYTES = 64 * 2**20
#: Seconds a git command may take.
GIT_TIMEOUT_S = 60
#: What is exported of a commit.
PATHS = ("softmax_core", "pyproject.toml")
#: The file that marks a folder of the cache as an export of the gate's: only such folders
#: are ever removed.
MARKER = ".softmax-bench-gate"
#: An export's folder name (the commit's full hash), and that of one being made.
EXPORT_NAME = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
MAKING_NAME = re.compile(r"\.[0-9a-f]{10}-\w+")
MAKING = ".softmax-bench-gate-making"


class GateError(Exception):
    """The gate cannot run (exit 2): one line that says why and what to do."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, timeout=GIT_TIMEOUT_S
        )
    except FileNotFoundError:
        raise GateError("git is not installed; fix: install git") from None
    except subprocess.TimeoutExpired:
        raise GateError(f"git {args[0]} took over {GIT_TIMEOUT_S} s in {repo}") from None


def toplevel(repo: Path) -> Path:
    """The root of the git work tree that holds ``repo``."""
    proc = _git(repo, "rev-parse", "--show-toplevel")
    if proc.returncode != 0:
        raise GateError(f"{repo} is not in a git work tree; fix: run the gate in the project")
    return Path(proc.stdout.decode().strip())


def resolve(repo: Path, rev: str) -> str:
    """The full hash of commit ``rev`` of the repository at ``repo``."""
    proc = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if proc.returncode != 0 or not rev:
        raise GateError(
            f"{rev!r} is no commit of {repo}; fix: name a commit, branch or tag that git knows"
        )
    return proc.stdout.decode().strip()


def _archive(repo: Path, sha: str) -> bytes:
    """``git archive`` of commit ``sha``'s :data:`PATHS` (those it has), at most
    :data:`MAX_EXPORT_BYTES` read."""
    paths = [p for p in PATHS if _git(repo, "cat-file", "-e", f"{sha}:{p}").returncode == 0]
    if PATHS[0] not in paths:
        raise GateError(
            f"commit {sha[:10]} has no {PATHS[0]} to measure; fix: gate commits of softmax-bench"
        )
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "archive", "--format=tar", sha, "--", *paths],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        data = proc.stdout.read(MAX_EXPORT_BYTES + 1)
        if len(data) > MAX_EXPORT_BYTES:
            raise GateError(
                f"commit {sha[:10]}'s {PATHS[0]} is over {MAX_EXPORT_BYTES >> 20} MiB; fix: gate "
                "commits of softmax-bench"
            )
        if proc.wait(timeout=GIT_TIMEOUT_S) != 0:
            raise GateError(f"git archive of commit {sha[:10]} failed")
    except subprocess.TimeoutExpired:
        raise GateError(f"git archive of commit {sha[:10]} took over {GIT_TIMEOUT_S} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    return data


def own_folder(parent: Path, prefix: str, marker: str, what: str) -> Path:
    """A new folder in ``parent`` named ``prefix…``, holding the file ``marker``; GateError
    naming ``what`` it is for when ``parent`` cannot take it."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        made = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        (made / marker).write_text("")
    except OSError as exc:
        raise GateError(
            f"cannot keep {what} in {parent} ({exc.strerror}); fix: pass --cache a folder you "
            "can write"
        ) from None
    return made


def export(repo: Path, sha: str, cache: Path, keep: tuple[Path, ...] = ()) -> Path:
    """Commit ``sha``'s tree of :data:`PATHS`, exported under ``cache`` (once; reused after)."""
    dest = cache / sha
    if (dest / MARKER).is_file():
        os.utime(dest)
        return dest
    data = _archive(repo, sha)
    if os.path.lexists(dest):
        raise GateError(
            f"{dest} is in the way of commit {sha[:10]}'s tree and was not made by the gate; "
            "fix: remove it or pass another --cache"
        )
    tmp = own_folder(cache, f".{sha[:10]}-", MAKING, "the commits' trees")
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(tmp)
        (tmp / MAKING).unlink()
        (tmp / MARKER).write_text(sha + "\n")
        os.replace(tmp, dest)
    except tarfile.TarError as exc:
        raise GateError(f"commit {sha[:10]}'s tree cannot be exported safely ({exc})") from None
    except OSError as exc:
        if not (dest / MARKER).is_file():  # not another gate's export of the same commit
            raise GateError(f"cannot export commit {sha[:10]} into {cache} ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(cache, {dest, *keep})
    return dest


def _prune(cache: Path, keep: set[Path]) -> None:
    """Remove the least recently used exports past :data:`KEEP` (never those in ``keep``, never
    a folder without :data:`MARKER`), and half-made ones (:data:`MAKING`) an hour old."""
    exports, now = [], time.time()
    for p in cache.iterdir():
        if MAKING_NAME.fullmatch(p.name) and (p / MAKING).is_file():
            if now - p.stat().st_mtime > 3600:  # an export a killed gate left half made
                shutil.rmtree(p, ignore_errors=True)
        elif EXPORT_NAME.fullmatch(p.name) and (p / MARKER).is_file():
            exports.append(p)
    exports.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in exports[KEEP:]:
        if old not in keep:
            shutil.rmtree(old, ignore_errors=True)


def missing_requirements(source: Path) -> list[str]:
    """The dependencies in ``source/pyproject.toml`` that this environment does not satisfy;
    GateError when the file cannot be read as a list of requirements."""
    path = source / "pyproject.toml"
    if tomllib is None or not path.is_file():
        return []
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
        declared = project.get("dependencies", []) if isinstance(project, dict) else None
        if not isinstance(declared, list) or not all(isinstance(d, str) for d in declared):
            raise ValueError("project.dependencies is not a list of requirements")
        requirements = [Requirement(text) for text in declared]
    except (OSError, UnicodeDecodeError, ValueError, InvalidRequirement) as exc:
        raise GateError(f"its pyproject.toml cannot be read ({exc})") from None
    missing = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            missing.append(f"{req} (found {have})")
    return missing


__all__ = ["GateError", "export", "missing_requirements", "resolve", "toplevel"]
