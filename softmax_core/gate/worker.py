"""The gate's measuring worker: one long-lived process per commit.

Started by :mod:`softmax_core.gate.workers` as ``python -I worker.py SOURCE SUITE CPUS``, never
imported by the package: SOURCE is a commit's exported tree, whose ``softmax_core`` is imported
ahead of any installed one, and SUITE a folder holding the asv suite (``bench/``) that names the
points, prepares them and selects the device from ``SOFTMAX_DEVICE``, ``SOFTMAX_BACKEND`` and
``SOFTMAX_THREADS`` exactly as ``asv run`` does; CPUS (comma-separated, or empty) are the cores
it runs on.  It reads one JSON request a line on stdin and answers each with one JSON line on
stdout:

* ``{"op": "points"}``: ``{"points": [[key, label], ...], "skipped": {label: reason}}``, the
  suite's gradient and epoch points, those this machine cannot run (memory, time) skipped;
* ``{"op": "prepare", "key": key}``: the point's inputs made on the device, its cold call and
  warm-up done, the previous point's inputs freed; answers ``{"call_s": seconds}``;
* ``{"op": "sample", "loops": n}``: ``n`` calls back to back, each complete (synchronised on a
  GPU) before it returns; answers ``{"s": seconds per call}``;
* ``{"op": "quit"}``.

The first line it writes is ``{"ready": ...}`` or ``{"error": ...}``; a request that fails is
answered ``{"error": "..."}``.  Whatever the measured code prints goes to stderr.  The whole
session is one measurement session of the commit's library where it has one (threads, allocator
policy, settling), with the garbage collector off while sampling.
"""

import contextlib
import gc
import json
import os
import sys
import time
import traceback

#: Seconds of warm-up calls after the cold one (at least two calls).
WARMUP_S = 0.05
#: Characters of the measured code's output kept in the log; the rest is dropped.
LOG_CHARS = 1 << 20


class _Bounded:
    """stderr, keeping the first :data:`LOG_CHARS` characters written."""

    def __init__(self, stream):
        self.stream, self.left = stream, LOG_CHARS

    def write(self, text: str) -> int:
        if self.left > 0:
            self.stream.write(text[: self.left])
            self.left -= len(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _answer(out, reply: dict) -> None:
    out.write(json.dumps(reply) + "\n")
    out.flush()


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _session(common, backend):
    """The commit's measurement session, or its backend settled where it has none."""
    try:
        from softmax_core.measure.session import MeasurementSession
    except ImportError:
        getattr(backend, "settle", lambda: None)()
        return contextlib.nullcontext()
    return MeasurementSession(backend, threads=common.threads())


class Points:
    """The suite's points, and the one whose inputs are on the device."""

    def __init__(self, common):
        self.common = common
        self.fn, self.args = None, ()

    def listing(self) -> dict:
        c, found, skipped = self.common, [], {}
        for case in c.suite_points("gradient") + c.suite_points("epoch"):
            key = [case.kind, case.method, case.batch, case.features, case.classes, case.dtype]
            try:
                c.require(case)
            except NotImplementedError as exc:
                skipped[case.label()] = str(exc)
                continue
            found.append([key, case.label()])
        return {"points": found, "skipped": skipped}

    def prepare(self, key) -> dict:
        kind, method, batch, features, classes, dtype = key
        self.fn, self.args = None, ()
        gc.collect()
        if kind == "epoch":
            case = self.common.epoch_case(method, batch, dtype)
        else:
            case = self.common.gradient_case(method, batch, features, classes, dtype)
        fn, args = self.common.prepare(case)
        fn(*args)  # the cold call, kept out of every sample
        calls, start = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - start < WARMUP_S:
            fn(*args)
            calls += 1
        self.fn, self.args = fn, args
        return {"call_s": (time.perf_counter() - start) / calls}

    def sample(self, loops: int) -> dict:
        if self.fn is None:
            raise RuntimeError("no point prepared")
        fn, args = self.fn, self.args
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(loops):
                fn(*args)
            return {"s": (time.perf_counter() - start) / loops}
        finally:
            gc.enable()


def main() -> int:
    source, suite, cpus = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path[:0] = [source, suite]
    if cpus:  # both workers on the same cores: a slower core would favour one side
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the measured code's prints must not reach the answers
    sys.stdout = sys.stderr = _Bounded(sys.stderr)
    try:
        import softmax_core
        from bench import common

        if not getattr(softmax_core, "__file__", None):
            raise ImportError("the commit's softmax_core has no __init__.py")
        where = os.path.realpath(softmax_core.__file__)
        if not where.startswith(os.path.realpath(source) + os.sep):
            raise ImportError(f"softmax_core came from {where}, not from the commit's tree")
        backend = common.backend()
        session = _session(common, backend)
    except Exception as exc:  # the commit does not import or run here: said, not raised
        traceback.print_exc()
        _answer(out, {"error": f"cannot start: {_why(exc)}"})
        return 1
    points = Points(common)
    with session:
        _answer(out, {"ready": backend.label})
        for line in sys.stdin:
            request = json.loads(line)
            op = request.get("op")
            if op == "quit":
                break
            try:
                if op == "points":
                    reply = points.listing()
                elif op == "prepare":
                    reply = points.prepare(request["key"])
                elif op == "sample":
                    reply = points.sample(int(request["loops"]))
                else:
                    reply = {"error": f"unknown request {op!r}"}
            except Exception as exc:  # the traceback goes to the log the gate names
                traceback.print_exc()
                reply = {"error": _why(exc)}
            _answer(out, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
