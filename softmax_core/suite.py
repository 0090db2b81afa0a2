"""The whole reference set in one command: ``softmax-bench suite --out DIR``.

On the current device (``SOFTMAX_DEVICE``), within a wall-time budget, each
stage a subprocess with its own deadline (a stage that hangs or crashes is
killed or recorded, and the suite goes on to write what it has):

1. ``environment``: ``info --json`` (the environment record), ``nvidia-smi`` and
   ``pip list`` where there are;
2. ``tests``: the backend tests (:data:`TEST_FILES`; each test runs on every
   library this device has: CuPy on a GPU, NumPy, array-api-strict, torch);
3. ``train`` / ``train-torch``: the MNIST recipe (θ = 0, lr 0.2, batch 100, 10
   epochs) on the device's library and on torch, checked against 7.97 %;
4. ``sidebyside``: :mod:`softmax_core.baseline.sidebyside`;
5. ``sweep``: the default grid, in two passes into one folder (structured
   gradients and epochs at B > 1 first, then ``--resume`` with the whole grid,
   whose last point is the B = 1 epoch), its per-point ``--time-budget`` shrunk
   to fit the time left (:func:`sweep_point_budget`);
6. ``report`` of the sweep; then ``suite.json``, ``suite.md`` and one archive of DIR.

A stage that cannot run here (torch missing, no tests beside the package) is
``skipped`` with the reason; ``failed`` and ``timeout`` make the exit status 1.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .fileio import atomic_write_text
from .measure.environment import load_average

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_FILES = (
    "tests/test_backend.py",
    "tests/test_model.py",
    "tests/test_measure.py",
    "tests/test_sidebyside.py",
)
STAGES = ("environment", "tests", "train", "train-torch", "sidebyside", "sweep", "report")
#: Each stage's cap: (fraction of the budget, at least, at most seconds); never past the
#: deadline less the report's cap and the archive's reserve.  The sweep takes what is left.
CAPS = {
    "environment": (0.05, 20, 40),
    "tests": (0.2, 30, 150),
    "train": (0.1, 30, 90),
    "train-torch": (0.1, 30, 90),
    "sidebyside": (0.25, 30, 150),
    "report": (0.08, 30, 60),
}
#: Seconds kept back for suite.json and the archive.
ARCHIVE_RESERVE_S = 10.0
#: The device tool brings back files of at most 16 MiB.
ARCHIVE_LIMIT_BYTES = 16 * 2**20
#: The recipe's test error, in images of 10 000, and how many a device may differ by
#: (float32 sums in another order flip a borderline image or two).
REFERENCE_TEST_ERRORS, TEST_ERROR_TOLERANCE = 797, 3
#: A sweep point's sampling is capped at a tenth of its time budget, its warm-up at a
#: fortieth; with the cold call, the peak pass and the guard's skips, the default grid
#: took 12 s of wall time per second of --time-budget on the 2-core reference machine
#: (79 s at 4 s, 258 s at 20 s) plus about SWEEP_FIXED_S.
SWEEP_S_PER_BUDGET_S, SWEEP_FIXED_S, SWEEP_BUDGET_RANGE = 12.0, 35.0, (0.5, 20.0)
#: --quick's sweep grid (the default grid's other settings).
QUICK_SWEEP = {"batch": (1, 32), "classes": (10, 100), "features": (784,)}
KILL_GRACE_S = 3.0


@dataclass
class Stage:
    name: str
    status: str = "skipped"  # ok | failed | timeout | skipped
    seconds: float = 0.0
    detail: str = ""
    files: list = field(default_factory=list)
    load_1min: float | None = (
        None  # the machine's load average when the stage ended (others' work too)
    )


def sweep_point_budget(seconds_left: float) -> float:
    """The sweep's --time-budget (seconds per point) for a sweep that must end within
    ``seconds_left``: the default 20 s when there is room, less in proportion when not."""
    lo, hi = SWEEP_BUDGET_RANGE
    return round(min(hi, max(lo, (seconds_left - SWEEP_FIXED_S) / SWEEP_S_PER_BUDGET_S)), 2)


def stage_cap(name: str, budget_s: float) -> float:
    frac, least, most = CAPS[name]
    return min(most, max(least, frac * budget_s))


def check_test_error(test_err: float) -> tuple[bool, str]:
    """Whether a final test error is the recipe's 7.97 % (within the device tolerance)."""
    n = round(test_err * 10_000)
    off = n - REFERENCE_TEST_ERRORS
    if off == 0:
        return True, f"test error {test_err:.2%}: the reference 7.97 %, exactly"
    ok = abs(off) <= TEST_ERROR_TOLERANCE
    return ok, (
        f"test error {test_err:.2%}: {off:+d} images against the reference 7.97 % "
        f"({'within' if ok else 'outside'} the {TEST_ERROR_TOLERANCE}-image tolerance)"
    )


class Suite:
    """Runs the stages in order against one deadline; see the module's docstring."""

    def __init__(
        self,
        out,
        *,
        budget_s: float = 480.0,
        device: str | None = None,
        data_dir=None,
        archive=None,
        skip=(),
        quick: bool = False,
        log=None,
    ):
        if not (isinstance(budget_s, (int, float)) and 0 < budget_s < float("inf")):
            raise ValueError(f"budget must be a positive number of seconds, got {budget_s!r}")
        unknown = set(skip) - set(STAGES)
        if unknown:
            raise ValueError(
                f"unknown stage(s) {', '.join(sorted(unknown))}: choose from {', '.join(STAGES)}"
            )
        self.out = Path(out).resolve()
        if self.out.exists() and any(self.out.iterdir()):
            raise ValueError(f"{self.out} exists and is not empty; fix: choose another --out")
        self.device = (device or os.environ.get("SOFTMAX_DEVICE") or "cpu").strip().lower()
        self.data_dir = Path(data_dir).resolve() if data_dir else None
        self.archive = (
            Path(archive).resolve() if archive else self.out.with_name(self.out.name + ".tar.gz")
        )
        self.budget_s, self.skip, self.quick = float(budget_s), set(skip), quick
        self.log = log or sys.stderr
        self.stages: list[Stage] = []
        self.t0 = time.monotonic()
        self.deadline = self.t0 + self.budget_s

    # ------------------------------------------------------------------ running

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, text: str) -> None:
        print(f"[suite {time.monotonic() - self.t0:5.0f} s] {text}", file=self.log, flush=True)

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.say(f"{self.device}, budget {self.budget_s:.0f} s, out {self.out}")
        for name in STAGES:
            st = Stage(name)
            start = time.monotonic()
            if name in self.skip:
                st.detail = "skipped by --skip"
            else:
                try:
                    getattr(self, "_" + name.replace("-", "_"))(st)
                except Exception as exc:  # a stage's own bug must not cost the archive
                    st.status, st.detail = (
                        "failed",
                        f"suite error: {type(exc).__name__}: {exc}"[:300],
                    )
            st.seconds = round(time.monotonic() - start, 1)
            st.load_1min = load_average()
            self.stages.append(st)
            detail = f": {st.detail}" if st.detail else ""
            self.say(f"{name}: {st.status} in {st.seconds:.0f} s (load {st.load_1min}){detail}")
        return self._finish()

    def _cli(
        self, st: Stage, args: list, timeout_s: float, log_name: str, *, env=None
    ) -> int | None:
        """Run ``python -m softmax_core.cli ARGS`` (``python ARGS`` when ARGS start with an
        option, e.g. ``-m pytest``); its output goes to ``DIR/log_name``.  Its exit status,
        or None when it was killed at its deadline or not started for want of time."""
        later = (
            stage_cap("report", self.budget_s)
            if st.name != "report" and "report" not in self.skip
            else 0
        )
        timeout_s = min(timeout_s, self.left() - ARCHIVE_RESERVE_S - later)
        if timeout_s < 2:
            st.status, st.detail = "skipped", "no time left in the budget"
            return None
        cmd = [
            sys.executable,
            *(args if args[0].startswith("-") else ["-m", "softmax_core.cli", *args]),
        ]
        env = {
            **os.environ,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            "SOFTMAX_DEVICE": self.device,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
            ),
        }
        path = self.out / log_name
        with open(path, "ab") as fh:
            fh.write(f"$ {' '.join(map(str, cmd))}   (deadline {timeout_s:.0f} s)\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                st.status, st.detail = "timeout", f"killed at its deadline of {timeout_s:.0f} s"
                rc = None
            fh.write(f"\n[exit status {proc.returncode}]\n".encode())
        if log_name not in st.files:
            st.files.append(log_name)
        return rc

    def _fail(self, st: Stage, rc, log_name: str) -> None:
        if rc is None:
            return
        st.status = "failed"
        st.detail = f"exit status {rc}: {_last_line(self.out / log_name)}"

    # ------------------------------------------------------------------ stages

    def _environment(self, st: Stage) -> None:
        rc = self._cli(
            st,
            ["info", "--json", "--device", self.device],
            stage_cap("environment", self.budget_s),
            "environment.log",
        )
        if rc != 0:
            return self._fail(st, rc, "environment.log")
        text = (self.out / "environment.log").read_text(errors="replace")
        record = json.loads(text[text.index("{") : text.rindex("}") + 1])
        record["suite"] = {
            "created": _now(),
            "budget_s": self.budget_s,
            "quick": self.quick,
            "source_commit": record.get("git_commit") or os.environ.get("SOFTMAX_BENCH_COMMIT"),
        }
        atomic_write_text(
            self.out / "environment.json", json.dumps(record, indent=2, default=str) + "\n"
        )
        st.files.append("environment.json")
        for name, cmd in (
            ("nvidia-smi.txt", ["nvidia-smi"]),
            ("pip-list.txt", [sys.executable, "-m", "pip", "list", "--format=freeze"]),
        ):
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
                if res.returncode == 0:
                    atomic_write_text(self.out / name, res.stdout)
                    st.files.append(name)
            except (OSError, subprocess.SubprocessError):
                pass
        b = record.get("backend", {})
        st.status, st.detail = (
            "ok",
            f"{b.get('label')} {b.get('gpu_name', record['machine'].get('cpu_model'))}",
        )

    def _tests(self, st: Stage) -> None:
        files = [f for f in TEST_FILES if (REPO_ROOT / f).is_file()]
        if not files:
            st.detail = f"no tests beside the package ({REPO_ROOT / 'tests'}): run from a checkout"
            return
        try:
            import pytest  # noqa: F401
        except ImportError:
            st.detail = "pytest is not installed"
            return
        args = [
            "-m",
            "pytest",
            "-v",
            "--durations=15",
            "-m",
            "not slow",
            "-p",
            "no:cacheprovider",
            "--junitxml",
            str(self.out / "tests.xml"),
            *files,
        ]
        mnist = (
            {"SOFTMAX_MNIST_DIR": str(self.data_dir)} if self.data_dir else {}
        )  # the MNIST tests too
        rc = self._cli(st, args, stage_cap("tests", self.budget_s), "tests.log", env=mnist)
        if (self.out / "tests.xml").exists():
            st.files.append("tests.xml")
        if rc is None:
            return
        st.status = "ok" if rc == 0 else "failed"
        st.detail = _last_line(self.out / "tests.log", "passed")

    def _train(self, st: Stage, backend: str | None = None) -> None:
        if self.data_dir is None:
            st.detail = "no --data-dir (the MNIST files)"
            return
        label = backend or "default"
        metrics = self.out / f"train-{label}.csv"
        args = [
            "train",
            "--data-dir",
            str(self.data_dir),
            "--epochs",
            "10",
            "--lr",
            "0.2",
            "--batch",
            "100",
            "--dtype",
            "float32",
            "--metrics-out",
            str(metrics),
            "--device",
            self.device,
        ]
        rc = self._cli(
            st,
            args + (["--backend", backend] if backend else []),
            stage_cap(st.name, self.budget_s),
            f"train-{label}.log",
        )
        if rc != 0:
            return self._fail(st, rc, f"train-{label}.log")
        rows = list(csv.DictReader(open(metrics, newline="", encoding="utf-8")))
        st.files.append(metrics.name)
        ok, st.detail = check_test_error(float(rows[-1]["test_err"]))
        st.status = "ok" if ok and len(rows) == 10 else "failed"

    def _train_torch(self, st: Stage) -> None:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            st.detail = "torch is not installed"
            return
        self._train(st, "torch")

    def _sidebyside(self, st: Stage) -> None:
        cap = min(
            stage_cap("sidebyside", self.budget_s), self.left() - ARCHIVE_RESERVE_S
        )  # _cli trims it more
        folder = self.out / "sidebyside"
        args = [
            "sidebyside",
            "--out",
            str(folder),
            "--device",
            self.device,
            "--time-budget",
            f"{max(1.0, 0.6 * cap):.0f}",
        ]
        if self.quick:
            args.append("--quick")
        elif self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        rc = self._cli(st, args, cap, "sidebyside.log")
        if rc != 0 and (rc is not None or not (folder / "sidebyside.json").exists()):
            return self._fail(st, rc, "sidebyside.log")
        # done, or stopped at its deadline after one workload at least (written after each)
        st.files += ["sidebyside/sidebyside.json", "sidebyside/sidebyside.md"]
        res = json.loads((folder / "sidebyside.json").read_text())
        rows = [(w["name"], v) for w in res["workloads"] for v in w["variants"]]
        bad = [f"{w}/{v['variant']}" for w, v in rows if v["status"] == "ok" and not v["agrees"]]
        skipped = sorted({v["variant"] for _, v in rows if v["status"] != "ok"})
        notes = [
            f"{len(res['workloads'])} workload(s) measured"
            + (f", then {st.detail}" if rc is None else "")
        ]
        notes.append(f"results disagree: {', '.join(bad)}" if bad else "the results agree")
        notes += [f"skipped: {', '.join(skipped)}"] if skipped else []
        st.status, st.detail = "failed" if bad else "ok" if rc == 0 else st.status, "; ".join(notes)

    def _sweep(self, st: Stage) -> None:
        from .runs.cases import DEFAULT_GRID, Grid

        grid = (
            Grid(
                batches=QUICK_SWEEP["batch"],
                classes=QUICK_SWEEP["classes"],
                features=QUICK_SWEEP["features"],
            )
            if self.quick
            else DEFAULT_GRID
        )
        quick = [a for k, v in QUICK_SWEEP.items() for a in (f"--{k}", ",".join(map(str, v)))]
        reserve = stage_cap("report", self.budget_s) if "report" not in self.skip else 0.0
        room = self.left() - ARCHIVE_RESERVE_S - reserve
        t = sweep_point_budget(room)
        base = [
            "sweep",
            "--out",
            str(self.out / "sweep"),
            "--time-budget",
            str(t),
            "--no-report",
            "--no-progress",
            "--device",
            self.device,
        ] + (quick if self.quick else [])
        start = time.monotonic()
        # first the structured points past B = 1; the --resume pass adds the rest of the grid, so
        # that its last point is the B = 1 epoch (60 000 steps: on a GPU each pays its launches)
        first = ",".join(str(b) for b in grid.batches if b > 1) or str(grid.batches[0])
        rc = self._cli(
            st, base + ["--methods", "structured", "--batch", first], room * 0.45, "sweep.log"
        )
        if rc not in (None, 0):
            return self._fail(st, rc, "sweep.log")
        detail = f"--time-budget {t:g} s for {room:.0f} s"
        rc = self._cli(st, base + ["--resume"], room - (time.monotonic() - start), "sweep.log")
        if rc not in (None, 0):
            return self._fail(st, rc, "sweep.log")
        if rc is None:
            detail += f" (the --resume pass: {st.detail})"
        results = self.out / "sweep" / "results.csv"
        statuses = (
            [r.get("status") for r in csv.DictReader(open(results, newline="", encoding="utf-8"))]
            if results.exists()
            else []
        )
        total = len(grid.cases())
        st.status = "ok" if len(statuses) >= total else "timeout"
        counts = ", ".join(f"{statuses.count(k)} {k}" for k in ("ok", "skipped", "error"))
        st.detail = (
            f"{detail}: {len(statuses)} of {total} points have a row ({counts})"
            f"{'' if len(statuses) >= total else ', stopped at its deadline'}"
        )
        st.files += [
            f for f in ("sweep/results.csv", "sweep/environment.json") if (self.out / f).exists()
        ]

    def _report(self, st: Stage) -> None:
        if not (self.out / "sweep" / "results.csv").exists():
            st.detail = "no sweep results"
            return
        rc = self._cli(
            st,
            ["report", str(self.out / "sweep"), "--out", str(self.out / "sweep")],
            stage_cap("report", self.budget_s),
            "report.log",
        )
        if rc != 0:
            return self._fail(st, rc, "report.log")
        st.status, st.detail = "ok", "sweep/report.md"
        st.files.append("sweep/report.md")

    # ------------------------------------------------------------------ the end

    def _finish(self) -> int:
        wall = time.monotonic() - self.t0
        bad = [s.name for s in self.stages if s.status in ("failed", "timeout")]
        summary = {
            "created": _now(),
            "device": self.device,
            "budget_s": self.budget_s,
            "wall_s": round(wall, 1),
            "ok": not bad,
            "archive": self.archive.name,
            "stages": [asdict(s) for s in self.stages],
        }
        atomic_write_text(self.out / "suite.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(self.out / "suite.md", _markdown(summary))
        size = write_archive(self.out, self.archive)
        self.say(
            f"archive {self.archive} ({size / 2**20:.2f} MiB); "
            f"wall {time.monotonic() - self.t0:.0f} s of {self.budget_s:.0f} s; "
            f"{'all stages ok or skipped' if not bad else 'NOT ok: ' + ', '.join(bad)}"
        )
        return 1 if bad else 0


def write_archive(folder: Path, archive: Path, limit: int = ARCHIVE_LIMIT_BYTES) -> int:
    """``folder`` as one .tar.gz (the one file that comes back from a device); past
    ``limit`` the PNG plots are left out (report.md says what they showed).  Its size."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    for skip_png in (False, True):
        tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(
                folder,
                arcname=folder.name,
                filter=lambda ti: None if skip_png and ti.name.endswith(".png") else ti,
            )
        os.replace(tmp, archive)
        if archive.stat().st_size <= limit:
            break
    return archive.stat().st_size


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(path: Path, containing: str = "") -> str:
    try:
        lines = [
            ln.strip()
            for ln in path.read_text(errors="replace").splitlines()
            if ln.strip() and not ln.startswith(("[exit status", "$ "))
        ]
    except OSError:
        return "no log"
    picked = [ln for ln in lines if containing in ln] if containing else lines
    return (picked or lines or ["no output"])[-1][:300]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _markdown(s: dict) -> str:
    rows = "\n".join(
        f"| {st['name']} | {st['status']} | {st['seconds']:.0f} | {st['load_1min']} | "
        f"{st['detail']} | {', '.join(st['files'])} |"
        for st in s["stages"]
    )
    return (
        f"# softmax-bench suite\n\n{s['created']}, device {s['device']}: {s['wall_s']:.0f} s of a "
        f"{s['budget_s']:.0f} s budget; "
        f"{'all stages ok or skipped' if s['ok'] else 'NOT all ok'}.\n\n"
        "| stage | status | s | load | detail | files |\n| --- | --- | --- | --- | --- | --- |\n"
        + rows
        + "\n\nload: the machine's 1-minute load average as the stage ended (other processes' work "
        "counts too: above the core count, times stretch and stages may reach their deadlines).\n"
    )


__all__ = [
    "Suite",
    "Stage",
    "STAGES",
    "TEST_FILES",
    "sweep_point_budget",
    "stage_cap",
    "check_test_error",
    "write_archive",
]
