"""Mirror of ``onnxruntime.capi`` so that existing imports keep working."""
from ortgpu.capi import (onnxruntime_inference_collection, onnxruntime_pybind11_state,  # noqa: F401
                         onnxruntime_validation)
