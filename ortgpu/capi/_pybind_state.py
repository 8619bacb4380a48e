"""``onnxruntime.capi._pybind_state``: onnxruntime's loader module, which re-exports the C module."""
from ortgpu.capi.onnxruntime_pybind11_state import *  # noqa: F401,F403
from ortgpu.capi.onnxruntime_pybind11_state import __all__  # noqa: F401
