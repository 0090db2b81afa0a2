"""Show that ``asv continuous --factor 1.2 <base> <head>`` is a working regression gate.

In a temporary clone of this repository's HEAD (committed files only) it makes two
synthetic commits on top of HEAD (C0):

* C1, a no-op: one line added to README.md, no code changed;
* C2, a 2x slowdown: ``grad_structured`` in softmax_core/model.py does its work twice;

then, with asv's machine file in a private HOME and every result in the clone's ``.asv/``:

1. ``asv continuous --factor 1.2 C0 C1`` must pass (exit 0: nothing got slower);
2. ``asv continuous --factor 1.2 C1 C2`` must fail (exit 1) and name the structured
   gradient's ``track_time`` among the regressions;
3. ``asv find C0~1..C2 <structured points>`` must bisect the slowdown to C2.

It prints asv's output and a summary, and exits 0 when all three came out as expected.
Each gate builds both commits in a virtualenv (the first one also installs the
dependencies) and runs the default suite on each: about 10-15 minutes on 2 cores.

    python tools/asv_gate.py                       # the whole default suite
    python tools/asv_gate.py --bench 'gradient'    # only what matches (faster)
    python tools/asv_gate.py -- -a rounds=2        # extra arguments for asv continuous
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
MACHINE = "asv-gate"
#: The points asv find bisects on: the structured gradient of one example at k <= 100.  asv
#: find follows the largest relative change of any selected point, so a few points whose
#: time is steady even on a loaded machine (one thread, data in cache) guide it best.
FIND_BENCH = r"gradient.Gradient.track_time\('structured', 1, \d+, (10|100), "
REGRESSION = re.compile(r"^\|\s*\+\s*\|")


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(proc.stdout, end="", flush=True)
    print(f"[exit {proc.returncode} after {time.monotonic() - start:.0f} s]", flush=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"asv_gate: {' '.join(cmd)} failed")
    return proc


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def slow_down(model_py: Path) -> None:
    """Make ``grad_structured`` call the original twice; ``GRADIENTS`` and sgd_epoch's kernel
    table (both defined below it) then hold the slow one."""
    src = model_py.read_text(encoding="utf-8")
    if "\ndef grad_structured(" not in src or "\nGRADIENTS" not in src:
        raise SystemExit(f"asv_gate: {model_py} has no grad_structured before GRADIENTS; update slow_down()")
    src = src.replace("\ndef grad_structured(", "\ndef _grad_structured_once(", 1)
    wrapper = ('def grad_structured(*args, **kwargs):\n'
               '    """asv gate demo: the structured gradient, computed twice (2x slower)."""\n'
               '    _grad_structured_once(*args, **kwargs)\n'
               '    return _grad_structured_once(*args, **kwargs)\n\n\n')
    at = src.index("\nGRADIENTS") + 1
    model_py.write_text(src[:at] + wrapper + src[at:], encoding="utf-8")


def make_clone(where: Path, source: Path) -> tuple[Path, dict[str, str]]:
    repo = where / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(source), str(repo)], check=True)
    for key, value in (("user.name", "asv gate"), ("user.email", "asv-gate@example.com"),
                       ("commit.gpgsign", "false")):
        git(repo, "config", key, value)
    commits = {"C0": git(repo, "rev-parse", "HEAD")}
    with open(repo / "README.md", "a", encoding="utf-8") as fh:
        fh.write("\n<!-- asv gate demo: a commit that changes no code -->\n")
    git(repo, "commit", "-q", "-am", "asv gate demo: no-op (README only)")
    commits["C1"] = git(repo, "rev-parse", "HEAD")
    slow_down(repo / "softmax_core" / "model.py")
    git(repo, "commit", "-q", "-am", "asv gate demo: structured gradient computed twice (2x slower)")
    commits["C2"] = git(repo, "rev-parse", "HEAD")
    return repo, commits


def regressions(output: str) -> list[str]:
    return [line for line in output.splitlines() if REGRESSION.match(line)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(ROOT), help="repository to clone (default: this one)")
    parser.add_argument("--factor", default="1.2", help="asv's --factor (default: 1.2)")
    parser.add_argument("--bench", help="only benchmarks matching this regex (asv's --bench)")
    parser.add_argument("--no-find", action="store_true", help="skip the asv find step")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    parser.add_argument("asv_args", nargs="*", help="extra arguments for asv continuous (after --)")
    args = parser.parse_args(argv)
    if shutil.which("git") is None:
        raise SystemExit("asv_gate: git is needed")
    tmp = Path(tempfile.mkdtemp(prefix="asv-gate-"))
    started = time.monotonic()
    try:
        repo, c = make_clone(tmp, Path(args.source))
        print("commits: " + ", ".join(f"{k} {v[:8]}" for k, v in c.items()), flush=True)
        # the shell's SOFTMAX_THREADS passes (one BLAS thread steadies a shared machine)
        env = {k: v for k, v in os.environ.items() if k not in ("SOFTMAX_DEVICE", "SOFTMAX_BACKEND",
                                                                 "SOFTMAX_ASV_SUITE")}
        env["HOME"] = str(tmp / "home")
        (tmp / "home").mkdir()
        asv = [sys.executable, "-m", "asv"]
        run(asv + ["machine", "--yes", "--machine", MACHINE], repo, env)
        extra = ["--factor", args.factor, "--machine", MACHINE, "--show-stderr"]
        extra += ["--bench", args.bench] if args.bench else []
        extra += args.asv_args

        noop = run(asv + ["continuous", *extra, c["C0"], c["C1"]], repo, env, check=False)
        slow = run(asv + ["continuous", *extra, c["C1"], c["C2"]], repo, env, check=False)
        slow_lines = regressions(slow.stdout)
        found = None
        if not args.no_find:
            bisect = run(asv + ["find", "--machine", MACHINE, "--show-stderr", f"{c['C0']}~1..{c['C2']}",
                                FIND_BENCH], repo, env, check=False)
            m = re.search(r"Greatest regression found: ([0-9a-f]+)", bisect.stdout)
            found = m.group(1) if m else None

        checks = {
            "no-op C0 -> C1 passes (exit 0, no regression)": noop.returncode == 0 and not regressions(noop.stdout),
            "2x slowdown C1 -> C2 fails (exit 1)": slow.returncode == 1,
            "the regressions include the structured gradient's time":
                any("gradient.Gradient.track_time('structured'" in line for line in slow_lines),
        }
        if not args.no_find:
            checks["asv find names C2"] = found is not None and c["C2"].startswith(found)
        print(f"\n== asv gate summary ({time.monotonic() - started:.0f} s; load average now "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}) ==")
        print(f"no-op gate: exit {noop.returncode}, {len(regressions(noop.stdout))} regression(s)")
        print(f"slowdown gate: exit {slow.returncode}, {len(slow_lines)} regression(s), "
              f"{sum('structured' in line for line in slow_lines)} of them structured")
        if not args.no_find:
            print(f"asv find: greatest regression at {found or 'nothing found'} (C2 is {c['C2'][:8]})")
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
