"""Profiling: onnxruntime-compatible traces, device timing hooks, NVML telemetry, summaries.

``SessionOptions.enable_profiling`` makes a session record into a ``Recorder``;
``InferenceSession.end_profiling()`` writes onnxruntime's JSON trace and returns its path;
``summarize(trace_path)`` and ``render_html(summary, trace_path)`` report on any such trace.
"""
from ortgpu.profiling.cost import Peak, flops, gpu_peak, measure_cpu_peak
from ortgpu.profiling.recorder import Recorder
from ortgpu.profiling.summary import Summary, format_table, summarize
from ortgpu.profiling.trace import read_trace, write_trace

__all__ = ["Recorder", "Summary", "summarize", "format_table", "read_trace", "write_trace",
           "Peak", "flops", "gpu_peak", "measure_cpu_peak"]
