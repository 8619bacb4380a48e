"""Mirror of ``onnxruntime.capi`` so that existing imports keep working."""
from ortgpu.capi import onnxruntime_pybind11_state, onnxruntime_validation  # noqa: F401
