"""System metrics of a job, sampled in its worker: CPU, memory, and GPU utilisation and memory.

A background thread samples every `interval` seconds and the series is written to the job's
system_metrics.json; the driver mirrors it into the job's MLflow run as stepped metrics (workers never
write to the tracking store).
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import Any


class SystemMonitor:
    """Context manager: `with SystemMonitor() as mon: ...; mon.samples`."""

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sysmon", daemon=True)
        self._gpus: list[Any] = []

    def __enter__(self) -> SystemMonitor:
        import psutil

        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading of cpu_percent is always 0: prime it
        psutil.cpu_percent(None)
        self._gpus = _nvml_handles()
        self._started = time.monotonic()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        import psutil

        row: dict[str, Any] = {
            "t": round(time.monotonic() - self._started, 2),
            "system_cpu_percent": psutil.cpu_percent(None),
            "process_cpu_percent": self._process.cpu_percent(None),
            "process_rss_mb": self._process.memory_info().rss / 2**20,
            "system_memory_percent": psutil.virtual_memory().percent,
        }
        for n, handle in enumerate(self._gpus):
            import pynvml

            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            row[f"gpu{n}_percent"] = float(util.gpu)
            row[f"gpu{n}_memory_mb"] = memory.used / 2**20
        self.samples.append(row)


def _nvml_handles() -> list[Any]:
    """NVML handles of the GPUs this process may use; none without an NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        import torch

        if not torch.cuda.is_available():
            return []
        # NVML numbers every GPU of the node; CUDA (and Ray) number only the visible ones.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            indices = [int(i) for i in visible.split(",") if i.strip().isdigit()]
        else:
            indices = list(range(pynvml.nvmlDeviceGetCount()))
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
    except Exception:  # noqa: BLE001 - no driver, no library: no GPU metrics, never a failed job
        return []
