"""One `bench run` per suite folder at a time: an advisory lock on results/<suite>/.lock.

Two runs on one suite would run the same jobs into the same folders (one deleting the other's training
state). `flock` is released by the kernel when its holder exits, however it exits, so a crashed run
never leaves a stale lock; the file's text (host, pid, start time, command) only names the holder.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class SuiteBusy(RuntimeError):
    """Another process holds the suite's lock; the message names it."""


def _holder(f: IO[str]) -> str:
    f.seek(0)
    try:
        info = json.loads(f.read() or "{}")
    except json.JSONDecodeError:
        info = {}
    if not info:
        return "another process (it has not written its name yet)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"pid {info.get('pid')} on {info.get('host')}, started {started}: "
            f"{info.get('command', '?')}")


@contextmanager
def suite_lock(suite_dir: Path, command: str | None = None) -> Iterator[None]:
    """Hold results/<suite>/.lock while the block runs; raise SuiteBusy at once if another process has it."""
    import fcntl

    path = suite_dir / ".lock"
    try:
        suite_dir.mkdir(parents=True, exist_ok=True)
        f = path.open("a+")
    except OSError as err:
        from bench.config import ConfigError

        raise ConfigError(f"results folder {suite_dir} is not writable ({err.strerror or err}): set results_dir "
                          f"(--set results_dir=PATH) to a folder you can write; `bench report --out DIR` "
                          f"reads a read-only one") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SuiteBusy(f"suite folder {suite_dir} is in use by {_holder(f)}; wait for it to finish "
                            f"(or stop it): two runs on one suite would run the same jobs twice") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": os.uname().nodename, "pid": os.getpid(), "started": time.time(),
                            "command": command or " ".join(["bench", *sys.argv[1:]])}))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)  # the lock ends with the file closing; an empty file names no holder
