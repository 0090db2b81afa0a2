"""The regression gate's own check: false alarms and sensitivity on three synthetic commits.

    SOFTMAX_THREADS=1 python tools/gate_check.py OUT            # 10 + 5 + 5 gates
    SOFTMAX_THREADS=1 python tools/gate_check.py OUT --rounds 1  # 2 + 1 + 1 gates

In a temporary clone of this repository's HEAD it makes three commits on top of it: one that
changes a comment only, one whose structured gradient busy-waits a tenth of its own time after
computing (10% slower), and one that busy-waits a twentieth (5%).  Then it runs
``softmax-bench gate`` (:func:`softmax_core.gate.run_gate`) HEAD against each, in rounds of
(comment, 10%, comment, 5%), and writes every gate's table (``<commit>-<n>.txt``), the
environment (``environment.json``) and ``summary.md``: per gate its exit status, wall time,
SLOWER points per family and the families' ratios.  The goals: the comment never SLOWER; the
10% commit SLOWER at 90% or more of the structured gradient's points and at no naive point;
the 5% commit SLOWER at the structured gradient's family level; every gate in 5 minutes.
An epoch's step calls the gradient's kernel, not ``grad_structured``: the epochs stay the same.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from softmax_core.gate import run_gate, summary
from softmax_core.gate.pairs import FAMILIES
from softmax_core.measure.environment import record

GRADIENT = "softmax_core/model/softmax.py"
BODY = """    xp = _check_problem(X, y, theta, check)
    return _grad_structured_sum(xp, X, y, theta, _classes(xp, y, theta.shape[1])) / X.shape[0]
"""
SLOWER_BODY = """    import time

    start = time.perf_counter()
    xp = _check_problem(X, y, theta, check)
    g = _grad_structured_sum(xp, X, y, theta, _classes(xp, y, theta.shape[1])) / X.shape[0]
    end = time.perf_counter()
    until = end + {share} * (end - start)  # a busy-wait of this share of its own time
    while time.perf_counter() < until:
        pass
    return g
"""
COMMENT = ("O(Bnk) time and O(Bk + nk)", "O(Bnk) time and O(Bk + nk) (B examples)")


def make_commits(lab: Path) -> dict[str, str]:
    """The three commits on top of the clone's HEAD: {name: hash}."""
    git = ["git", "-C", str(lab), "-c", "user.name=gate check", "-c", "user.email=gate@check"]
    base = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    made = {"base": base.stdout.strip()}
    path = lab / GRADIENT
    original = path.read_text(encoding="utf-8")
    if BODY not in original or COMMENT[0] not in original:
        raise SystemExit(f"gate_check: {GRADIENT} has changed; update BODY and COMMENT")
    edits = {
        "comment": original.replace(*COMMENT, 1),
        "slower10": original.replace(BODY, SLOWER_BODY.format(share=0.10)),
        "slower5": original.replace(BODY, SLOWER_BODY.format(share=0.05)),
    }
    for name, text in edits.items():
        subprocess.run([*git, "checkout", "-q", made["base"]], check=True)
        path.write_text(text, encoding="utf-8")
        subprocess.run([*git, "commit", "-qam", name], check=True)
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        made[name] = head.stdout.strip()
    subprocess.run([*git, "checkout", "-q", made["base"]], check=True)
    return made


def row(name: str, n: int, result) -> str:
    t = result.threshold
    slower = {f: 0 for f in FAMILIES}
    totals = {f: 0 for f in FAMILIES}
    for p in result.points:
        totals[p.family] += 1
        slower[p.family] += p.verdict(t) == "SLOWER"
    fams = {f.name: f for f in result.families}
    cells = [f"{slower[f]}/{totals[f]}" for f in FAMILIES]
    cells += [
        f"{fams[f].ratio:.3f} [{fams[f].low:.3f}, {fams[f].high:.3f}] {fams[f].verdict(t)}"
        for f in FAMILIES
        if f in fams
    ]
    return f"| {name} {n} | {result.status} | {result.wall_s:.0f} | " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="an empty or new folder for the tables")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 4 gates (default: 5)")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    args.out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    (args.out / "environment.json").write_text(json.dumps(record(), indent=2, default=str))
    lines = [
        "| gate | exit | wall s | SLOWER structured | SLOWER naive | SLOWER epoch "
        "| structured family | naive family | epoch family |",
        "|" + " --- |" * 9,
    ]
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lab = Path(tmp) / "lab"
        subprocess.run(["git", "clone", "-q", str(repo), str(lab)], check=True)
        commits = make_commits(lab)
        for _ in range(args.rounds):
            for name in ("comment", "slower10", "comment", "slower5"):
                counts[name] = n = counts.get(name, 0) + 1
                result = run_gate(commits["base"], commits[name], repo=lab)
                (args.out / f"{name}-{n}.txt").write_text(summary(result) + "\n")
                lines.append(row(name, n, result))
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
