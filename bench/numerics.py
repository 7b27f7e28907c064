"""The numerics mode: which CPU kernel paths every process that runs model code takes.

PyTorch, MKL and oneDNN each pick their kernels from the processor they find (AVX-512 here, AVX2 there),
and the kernels differ in the order they add floating-point numbers: the same job gives CIDEr 199.1 on
one machine and 203.2 on another. `reproducible` (the default) pins all three at AVX2, a level every
x86-64 machine of the last decade has, and turns on PyTorch's deterministic algorithms; `fast` leaves
each library to choose (the fastest path of this machine, numbers that may differ on another one).

The libraries read their variables once, when they load: the mode is applied (`apply`) before torch is
imported, in the driver (bench/cli.py), the test processes (tests/conftest.py) and every Ray worker (the
variables travel in Ray's runtime_env). A process that imported torch before the mode was applied with
another kernel path is refused (`NumericsError`), never silently run on the wrong path. In the
reproducible mode the suite's settings win over the environment's; what the environment had asked for
is recorded beside what ran (`state`).

On a GPU the same switch applies deterministic algorithms, with the cuBLAS workspace setting they need
(`configure_torch`, called in each job's process).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

from bench.config import ConfigError
from bench.cpuinfo import cpu_flags, cpu_model

MODES = ("reproducible", "fast")
DEFAULT_MODE = "reproducible"
#: What the reproducible mode sets, before torch loads. MKL_CBWR's STRICT: MKL's results stay the same
#: on any processor with at least AVX2 (Intel's conditional numerical reproducibility).
#: TORCHINDUCTOR_FORCE_DISABLE_CACHES: torch.compile builds its code afresh in each process instead of
#: reusing another process's on-disk cache (one left by other runs on this machine once gave LaDiC's
#: compiled stack an empty caption where eager and a fresh compile agree); compiled stacks pay the
#: compile time on every run, eager (the default) nothing.
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
          "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
#: CPU flags (as /proc/cpuinfo lists them) the AVX2 kernel paths need.
AVX2_FLAGS = ("avx2", "fma")
#: Environment variables carrying the mode to worker processes.
MODE_VAR, REQUESTED_VAR = "BENCH_NUMERICS", "BENCH_NUMERICS_REQUESTED"


class NumericsError(ConfigError):
    """The mode cannot be applied here; the message names the setting and the machine's capability."""


def check_mode(mode: str, where: str = "numerics") -> str:
    if mode not in MODES:
        raise NumericsError(f"{where}: unknown numerics mode {mode!r}; accepted: {', '.join(MODES)}")
    return mode


def check_machine(mode: str, cpuinfo: str | None = None, machine: str | None = None) -> None:
    """Refuse the reproducible mode on a CPU without the AVX2 paths it pins (one line, names both)."""
    if mode != "reproducible":
        return
    machine = machine or platform.machine()
    flags = cpu_flags(cpuinfo)
    missing = [f for f in AVX2_FLAGS if f not in flags]
    if machine not in ("x86_64", "AMD64") or missing:
        have = f"{machine} CPU" + (f" without {', '.join(missing)}" if missing and flags else "")
        raise NumericsError(f"numerics: reproducible pins the AVX2 kernel paths (ATEN_CPU_CAPABILITY=avx2), "
                            f"but this machine has a {have} ({cpu_model(cpuinfo)}); set numerics: fast")


def apply(mode: str, cpuinfo: str | None = None) -> dict[str, Any]:
    """Set the kernel-path variables of `mode` in this process (before torch loads); returns `state()`.

    Idempotent. Refuses (NumericsError) where torch is already loaded on another CPU capability.
    """
    check_mode(mode)
    check_machine(mode, cpuinfo)
    if REQUESTED_VAR not in os.environ:  # the first application sees what the user's environment asked
        asked = {k: os.environ[k] for k in PINNED if k in os.environ}
        os.environ[REQUESTED_VAR] = json.dumps(asked, sort_keys=True)
    if mode == "reproducible":
        if "torch" in sys.modules:
            _check_loaded_torch()
        os.environ.update(PINNED)
    os.environ[MODE_VAR] = mode
    return state()


def _check_loaded_torch() -> None:
    import torch

    have = torch.backends.cpu.get_cpu_capability()
    if have.lower() != PINNED["ATEN_CPU_CAPABILITY"]:
        raise NumericsError(
            f"numerics: reproducible needs torch's CPU capability AVX2, but torch was imported before the "
            f"mode was applied and runs {have}; apply bench.numerics before importing torch, or set "
            f"numerics: fast")


def current_mode() -> str:
    """The mode this process runs in (set by `apply`, or inherited from the driver by a worker)."""
    return check_mode(os.environ.get(MODE_VAR, DEFAULT_MODE), MODE_VAR)


def worker_env() -> dict[str, str]:
    """The variables a worker process needs to run in this process's mode (for Ray's runtime_env)."""
    names = (MODE_VAR, REQUESTED_VAR, *(PINNED if current_mode() == "reproducible" else ()))
    return {k: os.environ[k] for k in names if k in os.environ}


def configure_torch(mode: str | None = None) -> None:
    """Per job process, once torch is loaded: deterministic algorithms (CPU and GPU) in the
    reproducible mode; refuses a torch running another CPU capability than the mode pins."""
    import torch

    mode = mode or current_mode()
    reproducible = mode == "reproducible"
    if reproducible:
        _check_loaded_torch()
    torch.use_deterministic_algorithms(reproducible)
    torch.backends.cudnn.deterministic = reproducible
    torch.backends.cudnn.benchmark = not reproducible and torch.backends.cudnn.benchmark


def state() -> dict[str, Any]:
    """What the mode asked for and what the environment had asked for (no torch import)."""
    try:
        asked = json.loads(os.environ.get(REQUESTED_VAR, "{}"))
    except json.JSONDecodeError:
        asked = {}
    mode = os.environ.get(MODE_VAR, "")
    return {"mode": mode or "not applied",
            "set": {k: os.environ[k] for k in PINNED if k in os.environ} if mode == "reproducible" else {},
            "environment_asked": asked}


def kernels() -> dict[str, Any]:
    """The kernel paths the loaded libraries use (torch is imported here)."""
    import torch

    out: dict[str, Any] = {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                           "mkl": torch.backends.mkl.is_available(),
                           "mkldnn": torch.backends.mkldnn.is_available(),
                           "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                           "threads": torch.get_num_threads(),
                           "interop_threads": torch.get_num_interop_threads()}
    # MKL and oneDNN do not report their path; the cap they were started with is what bounds it.
    for name in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        out[name] = os.environ.get(name, "")
    return out
