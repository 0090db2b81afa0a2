"""Show that the regression gate (``tools/asv_gate.py``) catches a 2x slowdown and passes a no-op.

In a temporary clone of this repository's HEAD (committed files only) it makes two
synthetic commits on top of HEAD (C0):

* C1, a no-op: one line added to README.md, no code changed;
* C2, a 2x slowdown: ``grad_structured`` in softmax_core/model.py does its work twice;

then, with asv's machine file in a private HOME and every result in the clone's ``.asv/``:

1. the gate from C0 to C1 must pass (exit 0: no confirmed regression);
2. the gate from C1 to C2 must fail (exit 1) and name the structured gradient's
   ``track_time`` among the confirmed regressions;
3. ``asv find C0~1..C2 <structured points>`` must bisect the slowdown to C2.

It prints asv's output and a summary, and exits 0 when all three came out as expected.
The first gate builds both commits in a virtualenv (it also installs the dependencies);
each gate runs the default suite on both commits in interleaved rounds, then confirms
what moved: about 10-15 minutes on 2 cores.

    python tools/asv_gate_demo.py                       # the whole default suite
    python tools/asv_gate_demo.py --bench 'gradient'    # only what matches (faster)
    python tools/asv_gate_demo.py --confirm 0           # the gate without confirming passes
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: tools/ is on the path, the repository root is not
    sys.path.insert(0, str(ROOT))

from tools.asv_gate import CONFIRM_PASSES, run_echoed, run_gate, summary  # noqa: E402

MACHINE = "asv-gate"
#: The points asv find bisects on: the structured gradient of one example at k <= 100.  asv
#: find follows the largest relative change of any selected point, so a few points whose
#: time is steady even on a loaded machine (one thread, data in cache) guide it best.
STRUCTURED = "gradient.Gradient.track_time('structured'"
FIND_BENCH = r"gradient.Gradient.track_time\('structured', 1, \d+, (10|100), "


def run(
    cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    proc = run_echoed(cmd, cwd, env)
    if check and proc.returncode != 0:
        raise SystemExit(f"asv_gate_demo: {' '.join(cmd)} failed")
    return proc


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def slow_down(model_py: Path) -> None:
    """Make ``grad_structured`` call the original twice; ``GRADIENTS`` (defined below it)
    then holds the slow one, so every structured gradient point slows down; the epochs
    do not (``sgd_epoch`` runs its own fused kernel, not ``grad_structured``)."""
    src = model_py.read_text(encoding="utf-8")
    if "\ndef grad_structured(" not in src or "\nGRADIENTS" not in src:
        raise SystemExit(
            f"asv_gate_demo: {model_py} has no grad_structured before GRADIENTS; update slow_down()"
        )
    src = src.replace("\ndef grad_structured(", "\ndef _grad_structured_once(", 1)
    wrapper = (
        "def grad_structured(*args, **kwargs):\n"
        '    """asv gate demo: the structured gradient, computed twice (2x slower)."""\n'
        "    _grad_structured_once(*args, **kwargs)\n"
        "    return _grad_structured_once(*args, **kwargs)\n\n\n"
    )
    at = src.index("\nGRADIENTS") + 1
    model_py.write_text(src[:at] + wrapper + src[at:], encoding="utf-8")


def make_clone(where: Path, source: Path) -> tuple[Path, dict[str, str]]:
    repo = where / "repo"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(source), str(repo)], check=True
    )
    for key, value in (
        ("user.name", "asv gate"),
        ("user.email", "asv-gate@example.com"),
        ("commit.gpgsign", "false"),
    ):
        git(repo, "config", key, value)
    commits = {"C0": git(repo, "rev-parse", "HEAD")}
    with open(repo / "README.md", "a", encoding="utf-8") as fh:
        fh.write("\n<!-- asv gate demo: a commit that changes no code -->\n")
    git(repo, "commit", "-q", "-am", "asv gate demo: no-op (README only)")
    commits["C1"] = git(repo, "rev-parse", "HEAD")
    slow_down(repo / "softmax_core" / "model.py")
    git(
        repo, "commit", "-q", "-am", "asv gate demo: structured gradient computed twice (2x slower)"
    )
    commits["C2"] = git(repo, "rev-parse", "HEAD")
    return repo, commits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", default=str(ROOT), help="repository to clone (default: this one)"
    )
    parser.add_argument(
        "--factor", type=float, default=1.2, help="asv's --factor (default: %(default)s)"
    )
    parser.add_argument(
        "--confirm",
        type=int,
        default=CONFIRM_PASSES,
        help="the gate's confirming passes (default: %(default)s)",
    )
    parser.add_argument("--bench", help="only benchmarks matching this regex (asv's --bench)")
    parser.add_argument("--no-find", action="store_true", help="skip the asv find step")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args(argv)
    if shutil.which("git") is None:
        raise SystemExit("asv_gate_demo: git is needed")
    tmp = Path(tempfile.mkdtemp(prefix="asv-gate-"))
    started = time.monotonic()
    try:
        repo, c = make_clone(tmp, Path(args.source))
        print("commits: " + ", ".join(f"{k} {v[:8]}" for k, v in c.items()), flush=True)
        # the shell's SOFTMAX_THREADS passes (one BLAS thread steadies a shared machine)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SOFTMAX_DEVICE", "SOFTMAX_BACKEND", "SOFTMAX_ASV_SUITE")
        }
        env["HOME"] = str(tmp / "home")
        (tmp / "home").mkdir()
        asv = [sys.executable, "-m", "asv"]
        run(asv + ["machine", "--yes", "--machine", MACHINE], repo, env)

        def asv_in_clone(asv_args: list[str]) -> tuple[int, str]:
            proc = run(asv + asv_args, repo, env, check=False)
            return proc.returncode, proc.stdout

        extra = ("--machine", MACHINE, "--show-stderr") + (
            ("--bench", args.bench) if args.bench else ()
        )
        gates = {}
        for name, base, head in (("no-op", "C0", "C1"), ("slowdown", "C1", "C2")):
            print(f"\n== the gate, {name}: {base} -> {head} ==", flush=True)
            gates[name] = run_gate(
                c[base],
                c[head],
                factor=args.factor,
                confirm=args.confirm,
                asv_args=extra,
                asv=asv_in_clone,
            )
            print(summary(gates[name]), flush=True)
        noop, slow = gates["no-op"], gates["slowdown"]
        found = None
        if not args.no_find:
            bisect = run(
                asv
                + [
                    "find",
                    "--machine",
                    MACHINE,
                    "--show-stderr",
                    f"{c['C0']}~1..{c['C2']}",
                    FIND_BENCH,
                ],
                repo,
                env,
                check=False,
            )
            m = re.search(r"Greatest regression found: ([0-9a-f]+)", bisect.stdout)
            found = m.group(1) if m else None

        checks = {
            "no-op C0 -> C1 passes (exit 0)": noop.status == 0,
            "2x slowdown C1 -> C2 fails (exit 1)": slow.status == 1,
            "the confirmed regressions include the structured gradient's time": any(
                b.startswith(STRUCTURED) for b in slow.regressions
            ),
        }
        if not args.no_find:
            checks["asv find names C2"] = found is not None and c["C2"].startswith(found)
        print(
            f"\n== asv gate demo summary ({time.monotonic() - started:.0f} s; load average now "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}) =="
        )
        for name, gate in gates.items():
            passes = ", ".join(str(len(f)) for f in gate.flagged)
            print(
                f"{name} gate: exit {gate.status}; points reported slower, pass by pass: "
                f"{passes or 'none'}"
            )
        structured = [b for b in slow.regressions if b.startswith(STRUCTURED)]
        print(
            f"slowdown: {len(structured)} structured gradient point(s) among "
            f"{len(slow.regressions)} confirmed"
        )
        if not args.no_find:
            print(
                f"asv find: greatest regression at {found or 'nothing found'} (C2 is {c['C2'][:8]})"
            )
        for what, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {what}")
        return 0 if all(checks.values()) else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
