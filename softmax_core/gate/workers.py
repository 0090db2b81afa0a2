"""The gate's side of a measuring worker: a process per commit, spoken to in JSON lines.

:class:`Worker` starts :mod:`softmax_core.gate.worker` on one commit's exported tree and asks
it questions, each answered by a deadline: a worker that does not answer in time is stopped,
so the gate ends within its time budget whatever a point costs.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from .commits import GateError

#: The worker script, run by this interpreter.
SCRIPT = Path(__file__).with_name("worker.py")
#: Seconds a worker may take to import its commit and settle.
START_S = 120.0
#: Seconds a stopped worker may take to exit.
EXIT_S = 5.0
#: Bytes of a worker's log read for a message.
LOG_TAIL = 4096


class OutOfTime(Exception):
    """The gate's time budget ended while a worker was at work."""


class Worker:
    """One commit's measuring process.  ``name`` (BASE or HEAD) names it in every message."""

    def __init__(self, name: str, source: Path, suite: Path, log: Path, cpus: str = ""):
        self.name, self.log_path, self.backend = name, log, ""
        self._buf, self._closed = b"", False
        try:
            err = open(log, "wb")
        except OSError as exc:
            raise GateError(f"cannot write the worker's log {log} ({exc.strerror})") from None
        with err:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", str(SCRIPT), str(source), str(suite), cpus],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    def started(self, deadline: float) -> str:
        """Wait for the worker to be ready; its backend's label."""
        limit = time.monotonic() + START_S
        try:
            self.backend = self.reply(min(deadline, limit))["ready"]
        except OutOfTime:
            if limit < deadline:
                raise GateError(
                    f"{self.name}'s worker was not ready within {START_S:g} s (see {self.log_path})"
                ) from None
            raise
        return self.backend

    def send(self, request: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._ended() from None

    def ask(self, request: dict, deadline: float) -> dict:
        """Send ``request`` and wait for its answer until ``deadline`` (time.monotonic)."""
        self.send(request)
        return self.reply(deadline)

    def reply(self, deadline: float) -> dict:
        """The answer to the request sent last, by ``deadline``."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutOfTime(self.name)
            if not select.select([fd], [], [], min(left, 60.0))[0]:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._ended()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        reply = json.loads(line)
        if "error" in reply:
            raise GateError(f"{self.name}: {reply['error']} (see {self.log_path})")
        return reply

    def _ended(self) -> GateError:
        try:
            code = self.proc.wait(timeout=EXIT_S)
        except subprocess.TimeoutExpired:
            code = "none yet"
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL))
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        said = f": {lines[-1]}" if lines else ""
        return GateError(
            f"{self.name}'s worker ended (exit status {code}){said} (see {self.log_path})"
        )

    def close(self) -> None:
        """Stop the worker: asked first, killed after a second; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(GateError, OSError, subprocess.TimeoutExpired):
                    self.send({"op": "quit"})
                    self.proc.wait(timeout=1)
        finally:  # even when a second Ctrl-C cuts the wait short
            if self.proc.poll() is None:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=EXIT_S)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()


__all__ = ["OutOfTime", "Worker"]
