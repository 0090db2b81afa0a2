"""The sweep's progress: a tqdm bar on a terminal, a plain line now and then otherwise."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: Seconds between progress lines when stderr is not a terminal.
PLAIN_PROGRESS_EVERY_S = 15.0


class Progress:
    """Progress weighted by each point's predicted cost: a tqdm bar on a terminal that says
    its width, a plain line every :data:`PLAIN_PROGRESS_EVERY_S` otherwise (a pipe, a file, a
    terminal of 0 columns, where a bar would show nothing); nothing if ``enabled`` is False."""

    def __init__(
        self,
        weights: list[float],
        stream,
        enabled: bool | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.weights, self.stream, self.clock, self.i = weights, stream, clock, 0
        self.quiet = enabled is False
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.bar = None
        if (enabled if enabled is not None else self.tty) and _columns(stream) != 0:
            from tqdm import tqdm

            self.bar = tqdm(
                total=sum(weights),
                file=stream,
                unit="s",
                leave=True,
                dynamic_ncols=True,
                bar_format="{percentage:3.0f}%|{bar}| {desc} [{elapsed}<{remaining}]",
            )
        self.t0 = self.last_line = clock()

    def advance(self, label: str) -> None:
        if self.bar is not None:
            if self.i:
                self.bar.update(self.weights[self.i - 1])
            self.bar.set_description_str(f"{self.i + 1}/{len(self.weights)} {label}", refresh=True)
        elif not self.quiet and (now := self.clock()) - self.last_line >= PLAIN_PROGRESS_EVERY_S:
            self.last_line = now
            elapsed = now - self.t0
            print(
                f"[sweep] {self.i}/{len(self.weights)} point-rounds, {elapsed:.0f} s, now: {label}",
                file=self.stream,
                flush=True,
            )
        self.i += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def _columns(stream) -> int | None:
    """The terminal's width, or None where the stream is no terminal or does not say."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


__all__ = ["Progress", "PLAIN_PROGRESS_EVERY_S"]
