"""``softmax-bench gate BASE HEAD``: did HEAD make a point of the asv suite slower than BASE?

Each commit is exported once (:mod:`.commits`) and measured by one long-lived worker process of
its own (:mod:`.workers`), with the device, backend and BLAS threads of ``SOFTMAX_DEVICE``,
``SOFTMAX_BACKEND`` and ``SOFTMAX_THREADS``, as asv measures.  The points are the asv suite's
(``bench/`` of this work tree; ``SOFTMAX_ASV_SUITE`` as for asv) that both commits define and this
machine can run.  Point by point, both workers make the point's inputs and warm up; then they
take samples in turn, A B B A A B ..., each sample about :data:`SLOT_S` of calls, and each
adjacent pair gives one ratio HEAD / BASE (:mod:`.pairs`).  A first pass gives every point
:data:`~.pairs.FIRST_PAIRS` pairs; then the points not yet decided (UNSURE, or SLOWER not yet
confirmed) get twice their pairs, pass after pass, until decided, at
:data:`~.pairs.MAX_PAIRS`, or at the time budget.

Exit status: 0 no regression, 1 a regression (a point or a family SLOWER), 2 the gate could not
run (an unknown commit, a commit that does not import, a point that failed, a first pass that
did not fit the time budget), said in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .commits import GateError, export, missing_requirements, own_folder, resolve, toplevel
from .pairs import FIRST_PAIRS, MAX_PAIRS, VERDICTS, Family, Point, families
from .workers import OutOfTime, Worker

#: Seconds of calls in one sample: short, so that the two samples of a pair are taken within
#: a phase of the host's speed.
SLOT_S = 0.02
#: Seconds kept from the time budget to stop the workers.
CLOSE_S = 2.0
SIDES = ("BASE", "HEAD")


@dataclass
class GateResult:
    """What a gate found: every compared point, the families, and what was not compared."""

    base: str
    head: str
    threshold: float
    backend: str
    points: list[Point]
    only: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: False when the time budget ended a later pass or the confirmation
    complete: bool = True
    wall_s: float = 0.0

    @property
    def families(self) -> list[Family]:
        return families(self.points)

    def verdicts(self) -> dict[str, str]:
        return {p.label: p.verdict(self.threshold) for p in self.points}

    @property
    def regressions(self) -> list[str]:
        """The points and families that got slower (confirmed)."""
        t = self.threshold
        return [p.label for p in self.points if p.verdict(t) == "SLOWER"] + [
            f.name for f in self.families if f.verdict(t) == "SLOWER"
        ]

    @property
    def unconfirmed(self) -> list[str]:
        """The points and families that read SLOWER but were not confirmed."""
        t = self.threshold
        return [p.label for p in self.points if p.read(t) == "SLOWER" != p.verdict(t)] + [
            f.name for f in self.families if f.read(t) == "SLOWER" != f.verdict(t)
        ]

    @property
    def status(self) -> int:
        """0 no regression, 1 a regression, 2 a confirmation the time budget cut short."""
        if self.regressions:
            return 1
        return 2 if self.unconfirmed and not self.complete else 0


def shared_cores() -> str:
    """The cores both workers run on, comma-separated: the same ones, since on a virtual machine
    one core can be slower than another for seconds (another guest on it) and would favour
    the side that ran elsewhere.  ``SOFTMAX_THREADS`` cores (the last of those this process
    may use), or all of them when it is unset."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    try:
        threads = int(os.environ.get("SOFTMAX_THREADS") or 0)
    except ValueError:  # the workers say so
        threads = 0
    if 0 < threads < len(allowed):
        allowed = allowed[-threads:]
    return ",".join(map(str, allowed))


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/softmax-bench-gate`` (a relative one is ignored, as the XDG rules say),
    else ``~/.cache/softmax-bench-gate``."""
    root = os.environ.get("XDG_CACHE_HOME") or ""
    return (Path(root) if os.path.isabs(root) else Path.home() / ".cache") / "softmax-bench-gate"


def run_gate(
    base: str,
    head: str,
    *,
    repo: str | Path = ".",
    threshold: float = 0.05,
    time_budget_s: float = 600.0,
    select: str | None = None,
    cache: Path | None = None,
    start: Callable[..., Worker] = Worker,
    progress: Callable[[str], None] | None = None,
) -> GateResult:
    """Compare commit ``head`` against ``base`` (see the module's text); GateError when the
    gate cannot run.  ``select`` is a regular expression a point's label must match;
    ``start(name, source, suite, log, cpus)`` starts a worker (a seam for tests)."""
    began = time.monotonic()
    deadline = began + time_budget_s - CLOSE_S
    try:
        pattern = re.compile(select) if select else None
    except re.error as exc:
        raise GateError(
            f"--bench {select!r} is no regular expression ({exc}); fix: e.g. --bench 'structured'"
        ) from None
    root = toplevel(Path(repo))
    if not (root / "bench" / "common.py").is_file():
        raise GateError(f"{root} has no asv suite (bench/common.py); fix: run in the project")
    shas = [resolve(root, rev) for rev in (base, head)]
    cache = cache or default_cache()
    sources = [export(root, sha, cache, keep=tuple(cache / s for s in shas)) for sha in shas]
    for name, sha, source in zip(SIDES, shas, sources):
        try:
            missing = missing_requirements(source)
        except GateError as exc:
            raise GateError(f"{name} ({sha[:10]}): {exc}; fix: gate commits that build") from None
        if missing:
            raise GateError(
                f"{name} ({sha[:10]}) needs {', '.join(missing)}, which this environment lacks; "
                "fix: install it and run the gate again"
            )
    logs = _logs(cache)
    with tempfile.TemporaryDirectory(prefix="softmax-bench-gate-") as tmp:
        suite = Path(tmp) / "suite"
        _copy_suite(root / "bench", suite / "bench")
        cpus = shared_cores()
        with contextlib.ExitStack() as running:

            def workers(tag: str) -> list[Worker]:
                """A pair of workers, started and ready; stopped when the gate ends."""
                pair = []
                for name, source in zip(SIDES, sources):
                    w = start(name, source, suite, logs / f"{name}-{tag}.log", cpus)
                    running.callback(w.close)
                    pair.append(w)
                backends = [w.started(deadline) for w in pair]
                if backends[0] != backends[1]:
                    raise GateError(f"BASE measures on {backends[0]} and HEAD on {backends[1]}")
                return pair

            try:
                result = _compare(workers, shas, threshold, pattern, deadline, progress)
            except OutOfTime as exc:
                raise GateError(
                    f"the time budget ({time_budget_s:g} s) ended while {exc} started or listed "
                    "its points; fix: raise --time-budget"
                ) from None
    result.wall_s = time.monotonic() - began
    return result


def _copy_suite(source: Path, dest: Path) -> None:
    """The asv suite's modules (``bench/*.py``, regular files only) into ``dest``."""
    try:
        dest.mkdir(parents=True)
        for f in sorted(source.glob("*.py")):
            if f.is_file() and not f.is_symlink():
                shutil.copyfile(f, dest / f.name)
    except OSError as exc:
        raise GateError(f"cannot copy the asv suite {source} ({exc})") from None
    if not (dest / "common.py").is_file():
        raise GateError(f"{source}/common.py is no regular file (links are not copied)")


#: Gates whose worker logs are kept in the cache's ``logs/`` folder: only folders holding
#: :data:`LOG_MARKER` are ever removed.
KEEP_LOGS = 8
LOG_MARKER = ".softmax-bench-gate-logs"


def _logs(cache: Path) -> Path:
    """A folder of this gate's own for its workers' logs (the newest :data:`KEEP_LOGS` are
    kept)."""
    root = cache / "logs"
    now = time.time_ns()  # names sort as the gates began
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
    mine = own_folder(root, f"{stamp}.{now % 10**9:09d}-", LOG_MARKER, "the workers' logs")
    runs = sorted(p for p in root.iterdir() if (p / LOG_MARKER).is_file())
    for old in runs[:-KEEP_LOGS]:
        shutil.rmtree(old, ignore_errors=True)
    return mine


def _compare(workers, shas, threshold, pattern, deadline, progress) -> GateResult:
    a, b = workers("first")
    listings = [w.ask({"op": "points"}, deadline) for w in (a, b)]
    keyed = [{tuple(k): label for k, label in listing["points"]} for listing in listings]
    skipped = {**listings[0]["skipped"], **listings[1]["skipped"]}
    points = [Point(list(k), keyed[1][k]) for k in keyed[1] if k in keyed[0]]
    if pattern:
        points = [p for p in points if pattern.search(p.label)]
    only = {
        side: [mine[k] for k in mine if k not in other]
        for side, mine, other in (("BASE", keyed[0], keyed[1]), ("HEAD", keyed[1], keyed[0]))
    }
    if not points:
        why = f"; {len(skipped)} are skipped on this machine (memory or time)" if skipped else ""
        chosen = " and match --bench" if pattern else ""
        raise GateError(
            f"no point that both commits define{chosen} can run here{why}; fix: check --bench, "
            "SOFTMAX_ASV_SUITE and the device"
        )
    result = GateResult(shas[0], shas[1], threshold, a.backend, points, only, skipped)
    t = threshold
    for i, p in enumerate(points, 1):
        try:
            _measure(a, b, p.key, p.ratios, FIRST_PAIRS, deadline)
        except OutOfTime:
            raise GateError(
                f"the time budget ended after {i - 1} of {len(points)} points; fix: raise "
                "--time-budget or choose fewer points with --bench"
            ) from None
        _said(progress, f"[{i}/{len(points)}]", p, t)
    try:
        while todo := [p for p in points if p.read(t) == "UNSURE" and p.pairs < MAX_PAIRS]:
            for p in todo:
                _measure(a, b, p.key, p.ratios, min(p.pairs, MAX_PAIRS - p.pairs), deadline)
                _said(progress, "[more]", p, t)
        suspects = _suspects(result)
        if suspects:
            a.close()
            b.close()
            a, b = workers("fresh")
            for p in suspects:
                _measure(a, b, p.key, p.confirm, FIRST_PAIRS, deadline)
                _said(progress, "[fresh]", p, t)
            while todo := [p for p in suspects if _undecided(p, t)]:
                for p in todo:
                    _measure(a, b, p.key, p.confirm, len(p.confirm), deadline)
                    _said(progress, "[fresh]", p, t)
    except OutOfTime:
        result.complete = False
    return result


def _suspects(result: GateResult) -> list[Point]:
    """The points to measure with fresh workers: those that read SLOWER, and every point of a
    family that does."""
    t = result.threshold
    slower = {f.name for f in result.families if f.read(t) == "SLOWER"}
    return [p for p in result.points if p.read(t) == "SLOWER" or p.family in slower]


def _undecided(p: Point, threshold: float) -> bool:
    """A point that reads SLOWER whose fresh pairs do not yet tell, with room for more."""
    return (
        p.read(threshold) == "SLOWER"
        and p.confirmed(threshold) == "UNSURE"
        and len(p.confirm) < MAX_PAIRS
    )


def _said(progress, tag: str, p: Point, threshold: float) -> None:
    if progress:
        progress(f"{tag} {_line(p, threshold)}")


def _measure(a: Worker, b: Worker, key: list, into: list[float], pairs: int, deadline) -> None:
    """``pairs`` more pairs of the point ``key`` into ``into``, after both workers prepared it
    (one after the other: their warm-up calls time how many calls make a sample)."""
    request = {"op": "prepare", "key": key}
    calls = [w.ask(request, deadline)["call_s"] for w in (a, b)]
    loops = max(1, round(SLOT_S / max(max(calls), 1e-9)))
    sample = {"op": "sample", "loops": loops}
    for _ in range(pairs):
        if len(into) % 2 == 0:
            ta = a.ask(sample, deadline)["s"]
            tb = b.ask(sample, deadline)["s"]
        else:
            tb = b.ask(sample, deadline)["s"]
            ta = a.ask(sample, deadline)["s"]
        into.append(tb / ta)


def _line(p: Point, threshold: float) -> str:
    low, high = p.interval
    fresh = f" ({len(p.confirm)} fresh)" if p.confirm else ""
    return (
        f"{p.label:<58} {p.ratio:6.3f} [{low:.3f}, {high:.3f}] "
        f"{p.pairs:3d} pairs{fresh}  {p.verdict(threshold)}"
    )


def summary(result: GateResult) -> str:
    """The gate's table: families, every point, the counts and what was left out."""
    t = result.threshold
    lines = [
        f"gate: HEAD {result.head[:10]} against BASE {result.base[:10]} on {result.backend}, "
        f"threshold {t:.0%}, {result.wall_s:.0f} s",
        "",
        f"{'family':<22} {'points':>6} {'ratio':>7}  {'99% interval':<16}  verdict",
    ]
    for f in result.families:
        fresh = ""
        if f.fresh:
            fresh = f"  (fresh: {f.fresh.ratio:.3f} [{f.fresh.low:.3f}, {f.fresh.high:.3f}])"
        lines.append(
            f"{f.name:<22} {f.points:>6} {f.ratio:7.3f}  [{f.low:.3f}, {f.high:.3f}]   "
            f"{f.verdict(t)}{fresh}"
        )
    lines += ["", f"{'point':<58} {'ratio':>6}  {'99% interval':<16} pairs  verdict"]
    lines += [_line(p, t) for p in result.points]
    counts = {v: 0 for v in VERDICTS}
    for v in result.verdicts().values():
        counts[v] += 1
    lines += ["", "points: " + ", ".join(f"{n} {v}" for v, n in counts.items())]
    if not result.complete:
        lines.append("the time budget ended before every point was decided")
    for side, labels in result.only.items():
        if labels:
            lines.append(f"only in {side} (not compared): {', '.join(labels)}")
    if result.skipped:
        lines.append(f"skipped on this machine: {len(result.skipped)} points (memory or time)")
    if result.unconfirmed:
        lines.append(
            "read SLOWER, not confirmed by fresh workers: " + ", ".join(result.unconfirmed)
        )
    if result.status == 2:
        lines.append("could not decide: the time budget ended before the fresh workers confirmed")
    lines.append(
        "regressions: " + ", ".join(result.regressions) if result.regressions else "no regression"
    )
    return "\n".join(lines)


__all__ = ["GateResult", "default_cache", "run_gate", "summary"]
