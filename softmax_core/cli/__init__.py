"""softmax-bench: what softmax regression really costs on your hardware.

Commands: train, sweep, report, compare, sidebyside, scale, info, data fetch.  Every
failure the user can fix (bad arguments, missing data, no GPU) ends in one line
on stderr and a non-zero exit, never a traceback.  The argument types are in
:mod:`.arguments`, the parser in :mod:`.parser`, each command in :mod:`.commands`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

from ..backends import BackendError
from ..dask.cluster import close_all
from ..errors import InputError
from ..measure.session import thread_limit
from .arguments import EXIT_ERROR
from .commands import COMMANDS
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
    logging.getLogger("asyncio").addFilter(_not_cut_short)
    with _one_ctrl_c():
        try:
            with thread_limit(getattr(args, "threads", None)):
                code = COMMANDS[args.command](args)
            if sys.stdout is not None:  # None: started with stdout closed
                sys.stdout.flush()
            return code
        except BrokenPipeError:
            # the reader went away (`softmax-bench info | head -1`): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except (InputError, BackendError, OSError) as exc:  # what the user can fix; else a bug
            print(f"softmax-bench {command}: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt as stopped:
            # the Dask client's background tasks end with errors that distributed would log at
            # exit: the one line printed says all there is to say
            for name in ("distributed", "tornado"):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
            hint = f"; {stopped}" if str(stopped) else ""  # what the command says of its state
            how = "terminated" if isinstance(stopped, Terminated) else "interrupted"
            print(f"softmax-bench {command}: {how}{hint}", file=sys.stderr, flush=True)
            close_all()  # the Dask clusters this command started, while Ctrl-C is ignored
            return 143 if isinstance(stopped, Terminated) else 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's wall time, ``kill``): the command stops as on Ctrl-C."""


@contextlib.contextmanager
def _one_ctrl_c():
    """The first Ctrl-C (or SIGTERM) stops the command; another, while the command and then the
    process close what they opened (Dask clusters, worker processes, the results file), is
    ignored, so that the closing runs to its end.  A command that ends otherwise restores the
    handlers."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, _stop)}
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is _stop:  # none came
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _stop(signum, frame):
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _not_cut_short(record) -> bool:
    """False for asyncio's report of a Dask client's task that Ctrl-C cut short (its
    ``AllExit``): an interrupted command prints one line; any other asyncio report passes."""
    exc = record.exc_info[1] if record.exc_info else None
    return type(exc).__name__ != "AllExit"
