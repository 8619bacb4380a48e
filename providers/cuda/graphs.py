"""CUDA graphs with CuPy: the capture backend of ortgpu.graph_capture.GraphRunner."""
from __future__ import annotations

import numpy as np

from ortgpu.errors import Fail


class CapturedCudaGraph:
    """A captured cupy Graph with the device error flags its kernels write
    (providers/cuda/error_flags.py): handed back to the provider after each launch, so the
    run that replays the graph checks them when it ends."""

    def __init__(self, graph, flags: list):
        self.graph = graph
        self.flags = flags


class CupyGraphBackend:
    """Capture and launch with CuPy on the provider's stream.  NEVER RUN ON A GPU.

    Every allocation made while capturing comes from a memory pool of the graph's own
    (``cupy.cuda.using_allocator``): blocks freed during the capture are reused only inside
    it, and the pool (kept by the CapturedGraph) keeps every recorded address valid."""

    def __init__(self, provider):
        self.provider = provider

    def _stream(self):
        stream = self.provider.stream
        if stream.ptr in (0, 1):  # the legacy default stream (0, or cudaStreamLegacy = 1): CuPy refuses both
            raise Fail("CUDA graphs cannot be captured on the legacy default stream: give the session a "
                       "stream of its own (leave user_compute_stream unset, or pass a created stream)")
        return stream

    def stage(self, value):
        return value.copy()  # on the current (session) stream, from the shared pool, outside the capture

    def copy_into(self, dst, src) -> None:
        import cupy  # noqa: PLC0415
        if isinstance(src, np.ndarray):
            dst.set(np.ascontiguousarray(src).reshape(dst.shape), stream=self._stream())
        else:
            cupy.copyto(dst, src.reshape(dst.shape))  # device to device, on the current (session) stream

    def capture(self, fn):
        import cupy  # noqa: PLC0415
        stream = self._stream()
        pool = cupy.cuda.MemoryPool()
        from ortgpu.providers.cuda import blas  # noqa: PLC0415
        blas.bind_current_stream(stream)  # GEMMs inside the capture then make no stream call
        with cupy.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            try:
                outputs = fn()
            except BaseException:
                if hasattr(self.provider, "error_flags"):
                    self.provider.error_flags.discard()
                try:
                    stream.end_capture()  # leave the stream usable for the next run
                except Exception:  # noqa: BLE001 - the capture is invalid already; report the first error
                    pass
                raise
            graph = stream.end_capture()
        flags = self.provider.error_flags.take() if hasattr(self.provider, "error_flags") else []
        return CapturedCudaGraph(graph, flags), outputs, pool

    def launch(self, captured) -> None:
        captured.graph.launch(stream=self._stream())
        if captured.flags:
            self.provider.error_flags.defer_all(captured.flags)  # read when the run ends
