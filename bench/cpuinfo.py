"""The processor this process runs on, read from /proc/cpuinfo: its model name and instruction-set flags.

Light (no torch, no pydantic): the numerics mode, the provenance of results, latency records and
`bench device-check` (whose GPU machine has neither pydantic nor this project's other dependencies) all
read it. `platform.machine()` says only "x86_64", which cannot explain a difference between two runs.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def read_cpuinfo(path: Path = CPUINFO) -> str:
    """The text of /proc/cpuinfo ("" where unreadable: not Linux, a sandbox)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The instruction-set flags of the first processor in /proc/cpuinfo (empty where unreadable)."""
    text = cpuinfo if cpuinfo is not None else read_cpuinfo()
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model(cpuinfo: str | None = None) -> str:
    """The processor's model name (/proc/cpuinfo), else "unknown (<what the platform module says>)"."""
    text = cpuinfo if cpuinfo is not None else read_cpuinfo()
    for line in text.splitlines():
        if line.split(":")[0].strip() == "model name":
            return line.split(":", 1)[1].strip()
    return f"unknown ({platform.processor() or platform.machine() or 'no /proc/cpuinfo'})"
