"""The gate's side of a measuring worker: a process per commit, spoken to in JSON lines.

:class:`Worker` starts :mod:`softmax_core.gate.worker` on one commit's exported tree and asks
it questions, each answered by a deadline: a worker that does not answer in time is stopped,
so the gate ends within its time budget whatever a point costs.
"""

from __future__ import annotations

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


class OutOfTime(Exception):
    """The gate's time budget ended while a worker was at work."""


class Worker:
    """One commit's measuring process.  ``name`` (BASE or HEAD) names it in every message."""

    def __init__(self, name: str, source: Path, suite: Path, log: Path, cpus: str = ""):
        self.name, self.log_path = name, log
        self._buf = b""
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", str(SCRIPT), str(source), str(suite), cpus],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )

    def started(self, deadline: float) -> str:
        """Wait for the worker to be ready; its backend's label."""
        return self.reply(min(deadline, time.monotonic() + START_S))["ready"]

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
            if not select.select([fd], [], [], left)[0]:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._ended()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        reply = json.loads(line)
        if "error" in reply:
            raise GateError(f"{self.name}: {reply['error']}")
        return reply

    def _ended(self) -> GateError:
        code = self.proc.wait()
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        said = f": {lines[-1]}" if lines else ""
        return GateError(f"{self.name}'s worker ended (exit status {code}){said}")

    def close(self) -> None:
        """Stop the worker (asked first, killed after a second)."""
        if self.proc.poll() is None:
            try:
                self.send({"op": "quit"})
                self.proc.wait(timeout=1)
            except (GateError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()


__all__ = ["OutOfTime", "Worker"]
