"""Training checkpoints: written atomically with the previous one kept, loaded with no code run from them.

A checkpoint folder may be writable by others (a results_dir on a shared cluster filesystem), so every
load is `torch.load(weights_only=True)`: tensors and plain values only, never a pickle's code. A file that
is refused, truncated or incomplete is named, moved aside (`<name>.bad`), and training resumes from the
checkpoint before it (kept as `checkpoint.prev.pt` at every save), or starts afresh when there is none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"  # the one before the last: the fallback if the last is damaged


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (damaged, truncated, or holding more than tensors)."""


def atomic_save(obj: Any, path: Path, keep: Path | None = None) -> None:
    """Write `path` through a temporary file (removed if the write fails); the file it replaces becomes
    `keep` when given (the fallback if the new one is later found damaged)."""
    from bench.space import no_space, space_error, tensor_bytes

    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("wb") as f:  # a file object, so a full disk surfaces as its OSError (errno)
            torch.save(obj, f)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        full = space_error(err)
        if full is not None:
            raise no_space(full, path, tensor_bytes(obj)) from err
        raise
    if keep is not None and path.is_file():
        os.replace(path, keep)
    os.replace(tmp, path)


_CHECKPOINT_KEYS = ("module", "optimizer", "scheduler", "report", "rng")


def load_checkpoint(path: Path, device: torch.device, keys: Sequence[str] = _CHECKPOINT_KEYS) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` (tensors and plain values: no code in the file runs).

    Raises CheckpointError naming the file: refused (it holds other Python objects), unreadable
    (truncated, damaged), or lacking one of `keys`.
    """
    import pickle

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[-1][:200]
        raise CheckpointError(f"checkpoint {path} refused: it holds Python objects other than tensors and "
                              f"plain values, which could run code; it was not loaded ({first})") from None
    except Exception as err:  # noqa: BLE001 - torch reports a truncated zip as RuntimeError, others vary
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or damaged): "
                              f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: not a checkpoint of this loop")
    return state


def resume_state(workdir: Path, device: torch.device, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The newest usable checkpoint in `workdir` (the last, else the one before), or None: train afresh.

    A file that cannot be used is named in the log and moved aside to `<name>.bad`, so a rerun does not
    trip on it again and it stays for a look.
    """
    damaged = False
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = workdir / name
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path, device)
        except CheckpointError as err:
            damaged = True
            bad = path.with_name(path.name + ".bad")
            os.replace(path, bad)
            log(f"{err}; moved to {bad.name}")
            continue
        if name != CHECKPOINT:  # the fallback becomes the checkpoint every rank (and a rerun) resumes from
            os.replace(path, workdir / CHECKPOINT)
            log(f"falling back to the previous checkpoint ({name}, epoch {state['report']['epochs_done']})")
        return state
    if damaged:
        log("no usable checkpoint left: training restarts from epoch 0")
    return None
