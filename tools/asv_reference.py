"""Copy asv results of chosen commits into the committed reference results (results/asv).

asv writes every result under ``.asv/results`` (ignored by git, see asv.conf.json), so no
asv command changes a tracked file.  Updating the reference results that the repository
keeps is this deliberate step::

    asv run --machine epyc-2core-vm HEAD^!                  # measure (into .asv/results)
    python tools/asv_reference.py --machine epyc-2core-vm HEAD
    git add results/asv && git commit -m "asv reference results of ..."

It copies ``benchmarks.json``, the machine's ``machine.json`` and every result file of the
given commits (all environments: CPU, GPU, full suite; ``--env`` picks some) into
``results/asv``, and with
``--replace`` first removes that machine's other result files there (results of a suite
whose benchmarks no longer exist).  Run from the repository root.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from softmax_core.gate.commits import GateError, resolve

ROOT = Path(__file__).resolve().parent.parent


def asv_results_dir(config: Path) -> Path:
    """``results_dir`` of an asv config (relative to the config's folder)."""
    from asv import util

    conf = util.load_json(str(config), js_comments=True)
    return (config.parent / conf.get("results_dir", "results")).resolve()


def copy_reference(
    source: Path,
    dest: Path,
    machine: str | None,
    commits: list[str],
    replace: bool = False,
    env: str = "",
) -> list[Path]:
    """Copy the results of ``commits`` (full hashes) from ``source`` to ``dest``; return the copies.

    ``env``: only result files whose environment name contains it (e.g. ``SOFTMAX_DEVICEcpu``).
    """
    machines = sorted(p.parent.name for p in source.glob("*/machine.json"))
    if machine is None:
        if len(machines) != 1:
            raise SystemExit(
                f"asv_reference: {source} holds results of machines {machines or 'none'}; "
                "fix: pass --machine NAME"
            )
        machine = machines[0]
    src = source / machine
    if not (src / "machine.json").is_file():
        raise SystemExit(
            f"asv_reference: no results of machine {machine!r} in {source} "
            f"(machines there: {', '.join(machines) or 'none'}); fix: asv run --machine {machine}"
        )
    files = [f for c in commits for f in sorted(src.glob(f"{c[:8]}-*.json")) if env in f.name]
    missing = [c[:8] for c in commits if not any(f.name.startswith(c[:8]) for f in files)]
    if missing:
        raise SystemExit(
            f"asv_reference: no results of commit(s) {', '.join(missing)} in {src}; "
            f"fix: asv run --machine {machine} <commit>^!"
        )
    out = dest / machine
    out.mkdir(parents=True, exist_ok=True)
    if replace:
        for old in out.glob("*.json"):
            if old.name != "machine.json":
                old.unlink()
    copied = [dest / "benchmarks.json", out / "machine.json"] + [out / f.name for f in files]
    shutil.copy2(source / "benchmarks.json", copied[0])
    shutil.copy2(src / "machine.json", copied[1])
    for f in files:
        shutil.copy2(f, out / f.name)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "commits", nargs="*", default=["HEAD"], help="commits whose results to copy (default: HEAD)"
    )
    parser.add_argument("--machine", help="asv machine name (default: the only one in the results)")
    parser.add_argument(
        "--config",
        default=str(ROOT / "asv.conf.json"),
        help="asv config (default: the repository's)",
    )
    parser.add_argument(
        "--dest",
        default=str(ROOT / "results" / "asv"),
        help="reference folder (default: results/asv)",
    )
    parser.add_argument(
        "--env",
        default="",
        help="only environments whose name contains this, e.g. SOFTMAX_DEVICEcpu (default: all)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="remove the machine's other result files from the reference folder first",
    )
    args = parser.parse_args(argv)
    source = asv_results_dir(Path(args.config))
    if not (source / "benchmarks.json").is_file():
        raise SystemExit(f"asv_reference: no asv results in {source}; fix: asv run first")
    try:
        commits = [resolve(ROOT, c) for c in args.commits]
    except GateError as exc:
        raise SystemExit(f"asv_reference: {exc}") from None
    for path in copy_reference(
        source, Path(args.dest), args.machine, commits, args.replace, args.env
    ):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    print("now review and commit them: git add results/asv && git commit", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
