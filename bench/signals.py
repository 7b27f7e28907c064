"""Stopping the driver: SIGTERM (what a cluster scheduler sends) behaves as Ctrl-C, and a second one exits.

The first SIGINT or SIGTERM raises KeyboardInterrupt (for SIGTERM the subclass `Terminated`) where the
driver is, so the suite stops as on Ctrl-C: finished results kept, the summary written, the MLflow run
marked KILLED; the command then exits 130 (SIGINT) or 143 (SIGTERM), as shells report a signal's death.
While the driver winds down after the first, a second SIGINT or SIGTERM ends the process at once: the
user or scheduler has decided not to wait (the next run or `bench track` closes its MLflow run).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM received: stop as on Ctrl-C."""


def exit_code(err: KeyboardInterrupt) -> int:
    """130 after Ctrl-C, 143 after SIGTERM (128 + the signal's number)."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def handle_sigterm() -> None:
    """Make SIGTERM raise `Terminated` in the main thread.

    Ray's `ray.init` replaces the driver's SIGTERM handler with `sys.exit`, which skips the suite's
    clean stop: the Ray executor calls this again right after it.
    """
    if _main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def second_signal_exits() -> Iterator[None]:
    """While the block runs (the driver winding down after a first stop), SIGINT or SIGTERM exits at once."""
    if not _main_thread():
        yield
        return

    def now(signum: int, frame) -> None:
        os.write(2, f"\n{signal.Signals(signum).name} again: exiting now\n".encode())
        os._exit(128 + signum)

    previous: dict[int, Callable | int | None] = {s: signal.signal(s, now) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
