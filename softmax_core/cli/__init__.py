"""softmax-bench: what softmax regression really costs on your hardware.

Commands: train, sweep, report, compare, sidebyside, scale, info, data fetch.  Every
failure the user can fix (bad arguments, missing data, no GPU) ends in one line
on stderr and a non-zero exit, never a traceback.  The argument types are in
:mod:`.arguments`, the parser in :mod:`.parser`, each command in :mod:`.commands`.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import signal
import sys
import threading
import time

from ..backends import BackendError
from ..dask.cluster import close_sessions_since, open_sessions
from ..errors import InputError
from ..measure.session import thread_limit
from .arguments import EXIT_ERROR
from .commands import COMMANDS
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("asyncio").addFilter(_not_cut_short)
    before, command = open_sessions(), ""  # the command's name once its arguments are read
    with _signals_taken() as dropped:
        try:
            args = build_parser().parse_args(argv)
            command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
            code = _run(args, command, before)
            if dropped:  # a stop dropped as the command ended, not yet delivered again
                raise Terminated if dropped[-1] == signal.SIGTERM else KeyboardInterrupt
            return code
        except KeyboardInterrupt as stopped:  # also while an error line is printed
            # the Dask client's background tasks end with errors that distributed would log at
            # exit: the one line printed says all there is to say
            for name in ("distributed", "tornado"):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
            hint = f"; {stopped}" if str(stopped) else ""  # what the command says of its state
            how = "terminated" if isinstance(stopped, Terminated) else "interrupted"
            print(
                f"softmax-bench{' ' + command if command else ''}: {how}{hint}",
                file=sys.stderr,
                flush=True,
            )
            close_sessions_since(before)  # what the closing below missed, while signals wait
            return 143 if isinstance(stopped, Terminated) else 130


def _run(args, command: str, before: dict) -> int:
    try:
        try:
            with thread_limit(getattr(args, "threads", None)):
                code = COMMANDS[args.command](args)
            if sys.stdout is not None:  # None: started with stdout closed
                sys.stdout.flush()
            return code
        finally:
            # the Dask clusters this command started, closed while a Ctrl-C is still the
            # command's (at exit it would cut distributed's closing short)
            close_sessions_since(before)
    except BrokenPipeError:
        # the reader went away (`softmax-bench info | head -1`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (InputError, BackendError, OSError) as exc:  # what the user can fix; else a bug
        print(f"softmax-bench {command}: error: {_said(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _said(exc: Exception) -> str:
    """The error's line; the system's (a path that cannot be made or written) with its fix."""
    if not isinstance(exc, OSError) or "fix:" in str(exc) or exc.strerror is None:
        return str(exc)
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return (
        f"{where}{exc.strerror.lower()}; fix: give a path this user can write to, in a "
        "folder (not under a file), on a disk with room"
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's wall time, ``kill``): the command stops as on Ctrl-C."""


#: Seconds after a Ctrl-C (or SIGTERM) in which another is ignored: the first one's closing
#: runs to its end.  A later one is taken again (the first may have been lost: a library
#: that swallows KeyboardInterrupt, Python's garbage-collector callbacks).
REPEAT_IGNORED_S = 5.0


@contextlib.contextmanager
def _signals_taken():
    """The first Ctrl-C (or SIGTERM) stops the command; another within
    :data:`REPEAT_IGNORED_S`, while the command closes what it opened (Dask clusters, worker
    processes, the results file), is ignored.  Each signal is taken where it has its default
    meaning (Ctrl-C is ignored in a shell script's background job: SIGTERM is still taken
    there); the handlers before are restored on the way out.  In the main thread only.
    Yields the signals whose stop Python dropped and that are not delivered again yet."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    last: list[float] = []
    dropped: list[int] = []  # signals whose stop Python dropped in a callback
    pending: list[threading.Timer] = []  # their delivery again

    def stop(signum, frame):
        if not dropped and last and time.monotonic() - last[-1] < REPEAT_IGNORED_S:
            return
        dropped.clear()
        last.append(time.monotonic())
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def unraisable(info):
        """A stop raised where Python runs a callback (a finaliser, a weak reference's, the
        garbage collector's) is dropped there: it is delivered again, not printed."""
        if not isinstance(info.exc_value, KeyboardInterrupt):
            return hook(info)
        signum = signal.SIGTERM if isinstance(info.exc_value, Terminated) else signal.SIGINT
        dropped.append(signum)
        # from another thread, a moment later: delivered here, it would be dropped again
        again = threading.Timer(0.01, _thread.interrupt_main, (signum,))
        again.daemon = True
        pending.append(again)
        again.start()

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, stop)
    if previous[signal.SIGTERM] == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, stop)
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield dropped
    finally:
        sys.unraisablehook = hook
        for again in pending:  # the command has stopped: none is delivered past its end
            again.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def console() -> None:
    """The ``softmax-bench`` command: :func:`main`, and the process's exit.  A command stopped
    by a signal exits with another ignored, so that its exit is not cut short."""
    code = main()
    if code in (130, 143):
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


def _not_cut_short(record) -> bool:
    """False for asyncio's report of a Dask client's task that Ctrl-C cut short (its
    ``AllExit``): an interrupted command prints one line; any other asyncio report passes."""
    exc = record.exc_info[1] if record.exc_info else None
    return type(exc).__name__ != "AllExit"
