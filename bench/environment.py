"""What a job ran on, recorded in its result.json (`environment`) and summed up in the report footer.

Enough to explain a difference between two runs of the same job: the CPU model and the kernel paths each
library took (bench/numerics.py), the numerics mode and what the environment had asked for, thread
counts, the packages (the lock's digest and every installed package that differs from it), Python, the
commit and whether the checkout had uncommitted changes; on a GPU the device, driver, CUDA and cuDNN
versions and the determinism flags.
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Fields whose difference between two runs can explain different numbers (`differences`).
COMPARED = ("cpu_model", "numerics.mode", "kernels.torch_cpu_capability", "kernels.MKL_CBWR",
            "kernels.ONEDNN_MAX_CPU_ISA", "kernels.deterministic_algorithms", "kernels.threads",
            "packages.lock", "packages.differs", "python", "commit", "dirty", "gpu")


@lru_cache(maxsize=1)
def git_state(repo: Path = REPO_ROOT) -> tuple[str, bool | None]:
    """(HEAD, whether tracked files differ from it); ('unknown', None) outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "unknown", None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


def gpu() -> dict[str, Any] | None:
    """Device, driver, CUDA, cuDNN and determinism settings of the first CUDA device; None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")}
    try:
        import pynvml

        pynvml.nvmlInit()
        out["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001 - the driver version is informative; its absence costs nothing else
        out["driver"] = "unknown"
    return out


def capture() -> dict[str, Any]:
    """This process's environment, for a job's result.json (imports torch)."""
    from bench import cpuinfo, numerics
    from bench.lockfile import installed_vs_lock

    commit, dirty = git_state()
    return {"cpu_model": cpuinfo.cpu_model(), "machine": platform.machine(),
            "cpu_flags": sorted(cpuinfo.cpu_flags() & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"}),
            "numerics": numerics.state(), "kernels": numerics.kernels(),
            "packages": installed_vs_lock(), "python": platform.python_version(),
            "commit": commit, "dirty": dirty, "gpu": gpu()}


def field(env: dict[str, Any], dotted: str) -> Any:
    node: Any = env
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The compared fields that differ between two recorded environments: field -> (a, b)."""
    return {name: (field(a, name), field(b, name)) for name in COMPARED if field(a, name) != field(b, name)}


def kernel_path(env: dict[str, Any] | None) -> str:
    """One label for the numerics a result ran with, e.g. 'reproducible/AVX2' ('unrecorded' if none)."""
    if not env:
        return "unrecorded"
    return f"{field(env, 'numerics.mode')}/{field(env, 'kernels.torch_cpu_capability')}"
