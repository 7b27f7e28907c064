"""A full disk (or a quota, or a file-size limit) as one clear message: how much was needed, and where.

Writers that know what they write (result JSON, checkpoints) turn the OS error into `NoSpace` with the
size they needed; the runner turns any other into the same kind of message. The job then fails as one
row ("no space left on device, N MB needed at PATH"), its temporary files removed, and the suite goes on.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

#: ENOSPC: the device is full; EDQUOT: the user's quota is; EFBIG: a file-size limit (ulimit -f) is reached.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class NoSpace(OSError):
    """A write failed for lack of space; the message says how much was needed, and where."""


def space_error(err: BaseException) -> OSError | None:
    """The out-of-space OSError behind `err` (itself, or one it was raised from or during), else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, NoSpace) or (isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS):
            return err
        err = err.__cause__ or err.__context__
    return None


def no_space(err: OSError, path: Path | str, needed_bytes: int | None) -> NoSpace:
    """The message for a write of `needed_bytes` at `path` that failed with `err`."""
    if isinstance(err, NoSpace):
        return err
    needed = f", {max(needed_bytes, 1) / 1e6:.1f} MB needed" if needed_bytes is not None else ""
    why = os.strerror(err.errno) if err.errno else str(err)
    return NoSpace(f"no space left on device{needed} at {path} ({why})")


def tensor_bytes(obj: Any) -> int:
    """The bytes of every tensor inside `obj` (dicts, lists, tuples): what saving it needs, near enough."""
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0
