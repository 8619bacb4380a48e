"""Mixed-precision inference: float32 models in float16 or bfloat16.

* `convert_float_to_float16(model, ...)`: the offline converter (onnxconverter-common's
  function of that name and meaning); `convert_float_to_bfloat16` for bfloat16.
* `auto_mixed_precision(model, feeds, rtol, atol)`: the largest set of nodes that run in
  float16 within a tolerance on given feeds, found by bisection.
* The session switch ``sess_options.add_session_config_entry("ortgpu.precision", "fp16")``
  (runtime.py) converts at session creation and keeps the graph's inputs and outputs.
"""
from __future__ import annotations

from ortgpu.precision.amp import AmpResult, auto_mixed_precision
from ortgpu.precision.block_lists import DEFAULT_OP_BLOCK_LIST, RUNTIME_OP_BLOCK_LIST
from ortgpu.precision.convert import ConversionReport, convert_model
from ortgpu.precision.offline import convert_float_to_bfloat16, convert_float_to_float16

__all__ = [
    "convert_float_to_float16", "convert_float_to_bfloat16", "convert_model", "ConversionReport",
    "auto_mixed_precision", "AmpResult", "DEFAULT_OP_BLOCK_LIST", "RUNTIME_OP_BLOCK_LIST",
]
