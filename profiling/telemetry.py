"""GPU telemetry through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``).

A background thread samples utilization, memory used, power, SM and memory clocks and
temperature of one GPU while a profiled session lives; the samples become counter events
(``"ph": "C"``, category ``Telemetry``) in the trace, and the device's fixed facts (name,
driver, total memory) one instant event named ``gpu_device``.  Without the package, the library or a GPU, ``open_sampler``
returns a note saying so instead of a sampler: telemetry is never an error.
"""
from __future__ import annotations

import threading
import time


def _load_nvml():
    import pynvml  # noqa: PLC0415 - optional dependency
    return pynvml


class NvmlSampler:
    """Samples one GPU every `interval_s` seconds until stopped."""

    FIELDS = ("gpu_util_pct", "mem_util_pct", "mem_used_mib", "power_w", "sm_clock_mhz",
              "mem_clock_mhz", "temp_c")

    def __init__(self, nvml, device_index: int = 0, interval_s: float = 0.05, pci_bus_id: str | None = None):
        self._nvml = nvml
        # NVML numbers devices in its own order (all of them), CUDA in CUDA_VISIBLE_DEVICES order:
        # the PCI bus id names the same device in both
        self._handle = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id) if pci_bus_id else \
            nvml.nvmlDeviceGetHandleByIndex(device_index)
        name = nvml.nvmlDeviceGetName(self._handle)
        self.device_name = _text(name)
        self.info = {"device": self.device_name, "device_index": device_index,
                     "driver": _text(_optional(nvml.nvmlSystemGetDriverVersion)),
                     "mem_total_mib": _optional(
                         lambda: nvml.nvmlDeviceGetMemoryInfo(self._handle).total // (1 << 20))}
        if pci_bus_id:
            self.info["pci_bus_id"] = pci_bus_id
        self.interval_s = interval_s
        self.samples: list[tuple[int, dict]] = []  # (perf_counter_ns, {field: value})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ortgpu-nvml", daemon=True)

    def sample(self) -> dict:
        """One reading of every field; a field NVML does not give (not supported on this GPU, a
        transient error) is left out, and the others are still read."""
        nv, h = self._nvml, self._handle
        util = _optional(lambda: nv.nvmlDeviceGetUtilizationRates(h))
        mem = _optional(lambda: nv.nvmlDeviceGetMemoryInfo(h))
        power = _optional(lambda: nv.nvmlDeviceGetPowerUsage(h))
        reading = {"gpu_util_pct": None if util is None else util.gpu,
                "mem_util_pct": None if util is None else util.memory,
                "mem_used_mib": None if mem is None else mem.used // (1 << 20),
                "power_w": None if power is None else power / 1000.0,
                "sm_clock_mhz": _optional(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
                "mem_clock_mhz": _optional(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
                "temp_c": _optional(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))}
        return {k: v for k, v in reading.items() if v is not None}

    def _loop(self) -> None:
        while not self._stop.is_set():
            reading = self.sample()
            if reading:
                self.samples.append((time.perf_counter_ns(), reading))
            self._stop.wait(self.interval_s)

    def start(self) -> "NvmlSampler":
        self._thread.start()
        return self

    def stop(self) -> list[tuple[int, dict]]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
        return self.samples


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _optional(query):
    """A fixed fact NVML may not give (old drivers, restricted containers): None then."""
    try:
        return query()
    except Exception:  # noqa: BLE001
        return None


def open_sampler(providers, interval_s: float = 0.05) -> tuple[NvmlSampler | None, str | None]:
    """A started sampler for the GPU of the first CUDA provider, or (None, note) explaining why
    there is none; (None, None) when no provider runs on a GPU."""
    cuda = [p for p in providers if getattr(p, "device", "cpu") == "cuda"]
    device = [p for p in providers if getattr(p, "device", "cpu") != "cpu"]
    if not device:
        return None, None
    if not cuda:
        return None, f"GPU telemetry not collected: {device[0].name} is not an NVIDIA GPU provider"
    try:
        nvml = _load_nvml()
    except ImportError:
        return None, "GPU telemetry not collected: nvidia-ml-py (pynvml) is not installed"
    try:
        nvml.nvmlInit()
        index = int(getattr(cuda[0], "device_id", 0) or 0)
        return NvmlSampler(nvml, index, interval_s, pci_bus_id=_pci_bus_id(index)).start(), None
    except Exception as e:  # noqa: BLE001 - no driver, no device, permissions: a note
        return None, f"GPU telemetry not collected: NVML failed ({type(e).__name__}: {e})"


def _pci_bus_id(cuda_device: int) -> str | None:
    """The PCI bus id of CUDA device `cuda_device` (as CUDA numbers it), or None."""
    try:
        import cupy  # noqa: PLC0415
        return _text(cupy.cuda.runtime.deviceGetPCIBusId(cuda_device))
    except Exception:  # noqa: BLE001 - no CuPy: NVML's index is the best guess left
        return None
