"""The machine a `bench device-check` ran on, recorded in its results.json (`environment`).

Enough to tell whether two runs' numbers may be compared: versions (torch, transformers, CUDA, cuDNN,
driver), the settings that pick kernels (TF32 for matmul and cuDNN, cuDNN enabled/benchmark/
deterministic, the SDPA backends enabled), the CPU model (/proc/cpuinfo), the load average and the other
processes on the GPU at the start and the end, and the commit with its dirty flag. `GpuSampler` reads
the GPU's SM and memory clocks, power draw, temperature and throttle reasons through pynvml every
`SAMPLE_INTERVAL_S` in a background thread; each timed block records their min/median/max over its
time (`GpuSampler.window`). Without pynvml or a GPU every such record says "unavailable" and why:
never an error, the timings stand without it.

Imports only what the bare GPU machine has (torch, transformers, pynvml where present): no pydantic,
hence no bench/numerics.py; bench/environment.py's git and GPU helpers import none of it.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
from collections.abc import Callable
from typing import Any

from bench.cpuinfo import cpu_model
from bench.device_timing import now

SAMPLE_INTERVAL_S = 0.5
#: NVML's clock throttle ("clock event") reason bits (nvml.h; the same in every driver since 2015).
THROTTLE_REASONS = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
                    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
                    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting"}
NUMERIC = ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c")


def load_average() -> list[float] | str:
    """The 1, 5 and 15 minute load averages (another job on the host slows the launching CPU thread)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError as err:
        return f"unavailable: {err}"


def torch_backends() -> dict[str, Any]:
    """The switches that change which kernels run (and so the timings) without changing the code."""
    import torch

    cuda = torch.backends.cuda
    sdpa = {}
    for name in ("flash", "mem_efficient", "math", "cudnn"):
        enabled = getattr(cuda, f"{name}_sdp_enabled", None)
        sdpa[name] = enabled() if enabled else "not in this torch"
    return {"matmul_allow_tf32": cuda.matmul.allow_tf32, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_enabled": torch.backends.cudnn.enabled, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(), "sdpa_enabled": sdpa}


def open_nvml(device: str) -> tuple[Any, Any, str | None]:
    """(pynvml, the handle of `device`'s GPU, None), or (None, None, why not)."""
    if str(device).split(":")[0] != "cuda":
        return None, None, f"device {device!r} is not a CUDA GPU"
    try:
        import pynvml
    except ImportError as err:
        return None, None, f"pynvml is not importable: {err}"
    try:
        import torch

        pynvml.nvmlInit()
        index = torch.device(device).index or 0
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        try:  # by UUID: CUDA_VISIBLE_DEVICES may number the GPUs differently from NVML
            handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}") if uuid else None
        except pynvml.NVMLError:
            handle = None
        return pynvml, handle or pynvml.nvmlDeviceGetHandleByIndex(index), None
    except Exception as err:  # noqa: BLE001 - NVML missing or refused: record why, keep timing
        return None, None, f"NVML unavailable: {type(err).__name__}: {err}"


def nvml_reader(nv: Any, handle: Any) -> Callable[[], dict[str, Any]]:
    """A function returning one reading of the GPU's clocks, power, temperature and throttle reasons
    (a value NVML refuses on this GPU is None, the rest still read)."""
    throttle = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        nv.nvmlDeviceGetCurrentClocksThrottleReasons  # renamed in newer NVML; the same bits

    def attempt(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:  # noqa: BLE001 - one unsupported query must not lose the others
            return None

    def read() -> dict[str, Any]:
        mask = attempt(lambda: throttle(handle))
        power_mw = attempt(lambda: nv.nvmlDeviceGetPowerUsage(handle))
        return {"sm_clock_mhz": attempt(lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM)),
                "mem_clock_mhz": attempt(lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM)),
                "power_w": None if power_mw is None else power_mw / 1000.0,
                "temperature_c": attempt(lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)),
                "throttle_reasons": None if mask is None else
                [name for bit, name in THROTTLE_REASONS.items() if mask & bit]}

    return read


def gpu_processes(nv: Any, handle: Any, reason: str | None) -> list[dict[str, Any]] | dict[str, str]:
    """Every process holding the GPU (another one shares its compute and memory bandwidth)."""
    if nv is None:
        return {"unavailable": reason or "no NVML"}
    out: list[dict[str, Any]] = []
    try:
        for kind, query in (("compute", nv.nvmlDeviceGetComputeRunningProcesses),
                            ("graphics", nv.nvmlDeviceGetGraphicsRunningProcesses)):
            for p in query(handle):
                try:
                    name = nv.nvmlSystemGetProcessName(p.pid)
                except Exception:  # noqa: BLE001 - a process in another namespace has no name here
                    name = "unknown"
                used = getattr(p, "usedGpuMemory", None)
                out.append({"pid": p.pid, "kind": kind, "name": str(name), "this_process": p.pid == os.getpid(),
                            "used_memory_mib": None if used is None else round(used / 2**20)})
    except Exception as err:  # noqa: BLE001 - the listing is informative
        return {"unavailable": f"{type(err).__name__}: {err}"}
    return out


def summarise_samples(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """min/median/max of each numeric reading, and the share of readings that had each throttle reason."""
    out: dict[str, Any] = {"samples": len(readings)}
    for key in NUMERIC:
        values = [r[key] for r in readings if r.get(key) is not None]
        out[key] = ({"min": min(values), "median": statistics.median(values), "max": max(values)}
                    if values else None)
    seen = [r["throttle_reasons"] for r in readings if r.get("throttle_reasons") is not None]
    names = sorted({name for reasons in seen for name in reasons})
    out["throttle_reasons"] = {n: sum(n in reasons for reasons in seen) / len(seen) for n in names}
    return out


class GpuSampler:
    """Readings of the GPU every `interval` s in a daemon thread, on the run's clock; `window(t0, t1)`
    sums up those taken between two times. `read` None: unavailable, with `reason`."""

    def __init__(self, read: Callable[[], dict[str, Any]] | None, reason: str | None = None,
                 interval: float = SAMPLE_INTERVAL_S, clock: Callable[[], float] = now):
        self.read, self.reason, self.interval, self.clock = read, reason, interval, clock
        self.readings: list[dict[str, Any]] = []
        self.errors: dict[str, int] = {}
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_device(cls, device: str) -> tuple[GpuSampler, Any, Any]:
        """The sampler of `device`'s GPU (unavailable off CUDA or without pynvml) and NVML's module and handle."""
        nv, handle, reason = open_nvml(device)
        return cls(nvml_reader(nv, handle) if nv else None, reason), nv, handle

    def sample(self) -> None:
        """Take one reading now (also called at each block's edges: a block shorter than the interval
        still has its readings)."""
        if self.read is None:
            return
        t = self.clock()
        try:
            reading = {"t": t, **self.read()}
        except Exception as err:  # noqa: BLE001 - count and go on; the timings do not depend on it
            with self._lock:
                key = f"{type(err).__name__}: {err}"
                self.errors[key] = self.errors.get(key, 0) + 1
            return
        with self._lock:
            self.readings.append(reading)

    def _loop(self) -> None:
        # A reading is a handful of NVML queries (well under a millisecond of GIL) every half second:
        # small against any timed call, and it shows a clock or power change when it happens.
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> GpuSampler:
        if self.read is not None and self._thread is None:
            self.sample()
            self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """The readings taken from `t0` to `t1` summed up (`summarise_samples`), or why there are none."""
        if self.read is None:
            return {"available": False, "reason": self.reason or "no reader"}
        with self._lock:
            chosen = [r for r in self.readings if t0 <= r["t"] <= t1]
            errors = dict(self.errors)
        return {"available": True, "interval_s": self.interval, **summarise_samples(chosen),
                **({"read_errors": errors} if errors else {})}


def snapshot(nv: Any, handle: Any, reason: str | None) -> dict[str, Any]:
    """What may change during a run, taken at its start and again after every model: the load average
    and the GPU's processes."""
    return {"t": now(), "load_average": load_average(), "gpu_processes": gpu_processes(nv, handle, reason)}


def environment(device: str, nv: Any = None, handle: Any = None, reason: str | None = None) -> dict[str, Any]:
    """The run's environment at its start (`snapshot` under "start"; main() adds "end" as it goes)."""
    import torch
    import transformers

    from bench.environment import git_state, gpu

    commit, dirty = git_state()
    env: dict[str, Any] = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
                           "python": platform.python_version(), "cpu": cpu_model(), "machine": platform.machine(),
                           "cpu_threads": torch.get_num_threads(), "commit": commit,
                           "dirty": "unknown" if dirty is None else dirty, "torch_backends": torch_backends()}
    if str(device).split(":")[0] == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device).index or 0)
        details = gpu() or {}
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   driver=details.get("driver", "unknown"))
    env["gpu_sampling"] = f"every {SAMPLE_INTERVAL_S:g} s through pynvml" if nv else f"unavailable: {reason}"
    env["start"] = snapshot(nv, handle, reason)
    return env
