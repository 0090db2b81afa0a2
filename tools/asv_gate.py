"""The regression gate for CI: ``asv continuous`` with interleaved rounds, and every
regression confirmed.

    python tools/asv_gate.py BASE HEAD                 # e.g. origin/main HEAD
    SOFTMAX_THREADS=1 python tools/asv_gate.py origin/main HEAD   # a shared machine
    python tools/asv_gate.py BASE HEAD -- --bench gradient        # extra arguments
                                                                  # for asv continuous

Exit status: 0 no regression, 1 a confirmed regression (each listed), 2 asv failed or a
benchmark failed.  Run it from the repository root, after ``asv machine --yes``.

Why not ``asv continuous --factor 1.2 BASE HEAD`` alone: on a virtual machine the host's
speed drifts by 1.3-1.5x in phases of a fraction of a second to minutes (README, "What
stable promises"), and asv measures all of BASE, then all of HEAD.  A point measured in
a slow phase for one commit and a fast one for the other reads 1.2-1.5x "slower" with a
tight interval: on the 2-core reference VM with nothing else running, a commit that
changed no code failed the plain gate with 13 such points, and one interleaved pass (3
rounds) still with 4 of about 90.  A real slowdown moves its points every time they are
measured; a drift moves a point once in a while.  So the gate:

1. runs ``asv continuous --factor F --interleave-rounds -a rounds=R BASE HEAD``
   (R = 3: the two commits' rounds alternate, so a drift of minutes hits both; the suite
   shares a point's sampling time out over the rounds, so this costs what one plain
   round does);
2. re-measures only the points that pass reported slower, both commits again,
   interleaved over more rounds (``--confirm-rounds``, 6), and keeps a point as a
   regression only if it is reported slower again; up to ``--confirm`` (2) such passes.

A point that drift flags once in 20 (seen: 4 of 90 points in one pass) is then reported
by the gate about once in 8,000 of its runs; a point that really got slower is reported
every time, at the cost of re-measuring only the points that moved.  The last pass's
``asv continuous`` table is the gate's verdict; asv's result files hold the confirming
measurements.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: A regression row of asv's comparison table: "| + | before | after | ratio | benchmark |".
REGRESSION_ROW = re.compile(r"^\|\s*\+\s*\|.*\|\s*([^|]+?)\s*\|\s*$")
#: What asv appends to a benchmark's name when the table holds several environments.
ENV_SUFFIX = re.compile(r"\s+\[[^\]]*\]$")
ROUNDS = 3
CONFIRM_ROUNDS = 6
CONFIRM_PASSES = 2


@dataclass
class GateResult:
    """What the gate decided: the exit status, the regressions of each pass, the passes' asv
    output."""

    status: int
    flagged: list[list[str]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        """Benchmarks reported slower by every pass (the confirmed regressions)."""
        return self.flagged[-1] if self.status == 1 and self.flagged else []


def regressions(output: str) -> list[str]:
    """The benchmarks (with their parameters) that an ``asv continuous``/``compare`` table
    marks ``+`` (slower), each once, without the ``[machine/env]`` asv adds for several
    environments."""
    names = [
        ENV_SUFFIX.sub("", m.group(1)) for m in map(REGRESSION_ROW.match, output.splitlines()) if m
    ]
    return list(dict.fromkeys(names))


def selection_regex(benchmarks: list[str]) -> str:
    """One ``--bench`` regex that selects exactly these benchmarks (asv matches a
    parameterised benchmark as ``name(param, ...)``, as its table prints it)."""
    return "^(" + "|".join(re.escape(b) for b in benchmarks) + ")$"


def run_gate(
    base: str,
    head: str,
    *,
    factor: float = 1.2,
    rounds: int = ROUNDS,
    confirm_rounds: int = CONFIRM_ROUNDS,
    confirm: int = CONFIRM_PASSES,
    asv_args: tuple[str, ...] = (),
    asv: Callable[[list[str]], tuple[int, str]] | None = None,
) -> GateResult:
    """Compare ``base`` and ``head`` with asv and confirm every regression (see the module's text).

    Parameters
    ----------
    base, head : str
        Commits (any name git knows), as for ``asv continuous``.
    factor : float
        asv's ``--factor``: a point counts as slower beyond this ratio (and with
        statistical significance).
    rounds, confirm_rounds : int
        Interleaved rounds of the first pass, and of each confirming pass.
    confirm : int
        Confirming passes at most; 0 is plain ``asv continuous`` with interleaved rounds.
    asv_args : tuple of str
        Further arguments for every ``asv continuous`` (``--machine``, ``--show-stderr``, ...).
    asv : callable, optional
        Runs ``asv`` with a list of arguments, returns (exit status, output); default: the
        ``asv`` of this Python, output echoed.

    Returns
    -------
    GateResult
        ``status`` 0 (no confirmed regression), 1 (confirmed) or 2 (asv failed).
    """
    if not factor > 1:
        raise ValueError(f"factor must be above 1, got {factor}")
    for name, value in (("rounds", rounds), ("confirm_rounds", confirm_rounds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 0:
        raise ValueError(f"confirm must be a whole number >= 0, got {confirm!r}")
    narrowed = _split_asv_args(
        asv_args
    )  # the args less the user's selection: a confirming pass selects its own
    asv = asv or _run_asv
    result = GateResult(status=0)
    selection: list[str] | None = None
    for attempt in range(confirm + 1):
        n = rounds if attempt == 0 else confirm_rounds
        args = ["continuous", "--factor", str(factor), "--interleave-rounds", "-a", f"rounds={n}"]
        if selection is None:
            args += list(asv_args)
        else:
            args += [*narrowed, "--bench", selection_regex(selection)]
        status, output = asv(args + [base, head])
        result.outputs.append(output)
        if status not in (0, 1):
            result.status = 2
            return result
        flagged = regressions(output)
        if status == 1 and not flagged:
            # asv exits 1 on its own errors too (an unknown commit, no benchmark selected);
            # a slower point always has its '+' row (a failing benchmark makes asv exit 2)
            result.status = 2
            return result
        if selection is not None:  # a point counts only if it was flagged by every pass so far
            flagged = [b for b in flagged if b in selection]
        result.flagged.append(flagged)
        if not flagged:
            result.status = 0
            return result
        selection = flagged
    result.status = 1
    return result


def _split_asv_args(asv_args) -> list[str]:
    """``asv_args`` less the user's ``--bench`` selection, read as asv's own parser reads
    them (``-bX``, ``--ben X``, ``--bench=X`` alike).  ValueError for ``--factor`` and
    ``-a rounds=``: the gate sets them (its own ``--factor``, ``--rounds``,
    ``--confirm-rounds``)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--bench", "-b", action="append", default=[])
    parser.add_argument("--factor", "-f")
    parser.add_argument("--attribute", "-a", action="append", default=[])
    try:
        known, rest = parser.parse_known_args(list(asv_args))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(f"cannot read the asv arguments {' '.join(asv_args)!r} ({exc})") from None
    if known.factor is not None:
        raise ValueError("--factor belongs to the gate, not to asv: put it before the '--'")
    if any(a.replace(" ", "").startswith("rounds=") for a in known.attribute):
        raise ValueError("-a rounds= is the gate's to set: use its --rounds and --confirm-rounds")
    return rest + [x for a in known.attribute for x in ("-a", a)]


def run_echoed(cmd: list[str], cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``, echoing it (shell-quoted), its output and its exit status with the time
    taken."""
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    print(proc.stdout, end="", flush=True)
    print(f"[exit {proc.returncode} after {time.monotonic() - start:.0f} s]", flush=True)
    return proc


def _run_asv(args: list[str]) -> tuple[int, str]:
    proc = run_echoed([sys.executable, "-m", "asv", *args])
    return proc.returncode, proc.stdout


def summary(result: GateResult) -> str:
    """The gate's verdict in a few lines."""
    lines = []
    for i, flagged in enumerate(result.flagged):
        what = "first pass" if i == 0 else f"confirming pass {i}"
        lines.append(
            f"{what}: {len(flagged)} point(s) slower" + "".join(f"\n    {b}" for b in flagged)
        )
    verdict = {
        0: "PASS: no confirmed regression",
        1: f"FAIL: {len(result.regressions) or 'some'} confirmed regression(s)",
        2: "ERROR: asv or a benchmark failed (see its output above)",
    }[result.status]
    return "\n".join(lines + [verdict])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("base", help="the commit to compare against (e.g. origin/main)")
    p.add_argument("head", help="the commit under test (e.g. HEAD)")
    p.add_argument(
        "--factor", type=float, default=1.2, help="asv's --factor (default: %(default)s)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="interleaved rounds of the first pass (default: %(default)s)",
    )
    p.add_argument(
        "--confirm-rounds",
        type=int,
        default=CONFIRM_ROUNDS,
        help="interleaved rounds of a confirming pass (default: %(default)s)",
    )
    p.add_argument(
        "--confirm",
        type=int,
        default=CONFIRM_PASSES,
        help="confirming passes at most; 0: one pass only (default: %(default)s)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    # everything after the first '--' is asv's, wherever the gate's own options stand
    cut = argv.index("--") if "--" in argv else len(argv)
    argv, asv_args = argv[:cut], argv[cut + 1 :]
    p.epilog = (
        "Arguments after '--' go to every asv continuous, e.g. -- --bench gradient --show-stderr. "
        "Exit status: 0 no confirmed regression, 1 a confirmed regression, 2 asv or a benchmark "
        "failed, or bad arguments."
    )
    args = p.parse_args(argv)
    if not Path("asv.conf.json").is_file():
        print(
            "asv_gate: error: no asv.conf.json here; fix: run from the repository root",
            file=sys.stderr,
        )
        return 2
    try:
        result = run_gate(
            args.base,
            args.head,
            factor=args.factor,
            rounds=args.rounds,
            confirm_rounds=args.confirm_rounds,
            confirm=args.confirm,
            asv_args=tuple(asv_args),
        )
    except ValueError as exc:
        print(f"asv_gate: error: {exc}", file=sys.stderr)
        return 2
    print("\n== asv gate ==\n" + summary(result), flush=True)
    return result.status


if __name__ == "__main__":
    sys.exit(main())
