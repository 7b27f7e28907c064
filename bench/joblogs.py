"""Library chatter goes to the job's log.txt, not the console.

transformers prints a weight-loading report (e.g. the UNEXPECTED pooler keys when MiniLM loads without
its pooler, which is intended) and progress bars from inside the workers; the models log their own
notes. The console should show the suite's progress and results; the job's log.txt keeps everything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Loggers whose records belong in the job's log: the project's models and the model libraries.
LOGGERS = ("models", "huggingface_hub", "timm")


@contextmanager
def library_logs_to(path: Path) -> Iterator[None]:
    """While the block runs, route library log records to `path` (appended) and hide progress bars."""
    from transformers.utils import logging as hf_logging

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s", "%H:%M:%S"))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_default_handler()  # its stderr handler: the console
    hf_logging.add_handler(handler)
    hf_logging.disable_progress_bar()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False  # not to the root logger's (console) handlers
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, (propagate, level) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate
            lg.setLevel(level)
        hf_logging.remove_handler(handler)
        hf_logging.enable_default_handler()
        if bars:
            hf_logging.enable_progress_bar()
        handler.close()
