"""Device-side timing of profiled steps: the probe interface, CUDA events, NVTX ranges.

The profiled run loop (``Plan.run_profiled``) brackets each step with ``probe.begin(name)`` and
``probe.end(token)``; ``end_profiling`` calls ``probe.resolve(token)`` for each step once the
device work is done, which gives ``(start_ns, dur_ns)`` on the recorder's host clock
(``time.perf_counter_ns``) or None.  A provider may offer its own probe through a
``profiling_probe()`` method; otherwise a CUDA provider gets CUDA events on its stream.
NVTX ranges (CuPy's ``cupy.cuda.nvtx``, else the ``nvtx`` package) name each step for Nsight Systems.
"""
from __future__ import annotations

import time


class DeviceProbe:
    """The interface: no device timing at all (the CPU)."""

    stream_id = 0  # the trace's tid for this device's Kernel events

    def begin(self, name: str):
        return None

    def end(self, token):
        return token

    def resolve(self, token):
        return None


class CudaEventProbe(DeviceProbe):
    """Two CUDA events per step on the provider's stream, placed on the host clock through an
    anchor event recorded (on the first step, inside the provider's run context) at a known host
    time.  Needs CuPy and a GPU: NOT YET RUN ON A GPU."""

    def __init__(self, stream, cupy):
        self._cupy = cupy
        self._stream = stream
        self.stream_id = 1_000_000 + int(getattr(stream, "ptr", 0) or 0) % 1_000_000
        self._anchor = None
        self._anchor_ns = 0

    def begin(self, name):
        if self._anchor is None:
            self._stream.synchronize()
            self._anchor = self._cupy.cuda.Event()
            self._anchor.record(self._stream)
            self._anchor.synchronize()
            self._anchor_ns = time.perf_counter_ns()
        start = self._cupy.cuda.Event()
        start.record(self._stream)
        return start

    def end(self, token):
        stop = self._cupy.cuda.Event()
        stop.record(self._stream)
        return token, stop

    def resolve(self, token):
        start, stop = token
        stop.synchronize()
        elapsed_ms = self._cupy.cuda.get_elapsed_time
        t0 = self._anchor_ns + int(elapsed_ms(self._anchor, start) * 1e6)
        return t0, int(elapsed_ms(start, stop) * 1e6)


class NvtxProbe(DeviceProbe):
    """NVTX ranges around each step, around an inner probe's timing."""

    def __init__(self, inner: DeviceProbe, nvtx):
        self._inner, self._nvtx = inner, nvtx
        self.stream_id = inner.stream_id

    def begin(self, name):
        self._nvtx.push_range(name)
        return self._inner.begin(name)

    def end(self, token):
        token = self._inner.end(token)
        self._nvtx.pop_range()
        return token

    def resolve(self, token):
        return self._inner.resolve(token)


def probe_for(providers) -> tuple[DeviceProbe | None, list[str]]:
    """The probe for the first device provider (None on the CPU alone), and notes on what
    could not be set up."""
    device = [p for p in providers if getattr(p, "device", "cpu") != "cpu"]
    if not device:
        return None, []
    prov = device[0]
    notes = []
    probe = None
    own = getattr(prov, "profiling_probe", None)
    try:
        if own is not None:
            probe = own()
        elif prov.device == "cuda":
            import cupy
            probe = CudaEventProbe(prov.stream, cupy)
    except Exception as e:  # noqa: BLE001 - device timing is optional: say why it is missing
        notes.append(f"device timing unavailable on {prov.name}: {type(e).__name__}: {e}")
        probe = None
    if probe is None:
        return None, notes
    ranges = nvtx_ranges()
    return (probe, notes) if ranges is None else (NvtxProbe(probe, ranges), notes)


class CupyNvtx:
    """cupy.cuda.nvtx (shipped with CuPy) behind the ``nvtx`` package's push_range/pop_range."""

    def __init__(self, module):
        self._m = module

    def push_range(self, name):
        self._m.RangePush(name)

    def pop_range(self):
        self._m.RangePop()


def nvtx_ranges():
    """NVTX ranges from CuPy's own binding (on every CuPy install), else the ``nvtx`` package
    (rarely on a GPU image), else None."""
    try:
        from cupy.cuda import nvtx as cupy_nvtx  # noqa: PLC0415
        if getattr(cupy_nvtx, "available", True):
            return CupyNvtx(cupy_nvtx)
    except Exception:  # noqa: BLE001 - no CuPy, or CuPy built without NVTX
        pass
    try:
        import nvtx  # noqa: PLC0415
    except ImportError:
        return None
    return nvtx
