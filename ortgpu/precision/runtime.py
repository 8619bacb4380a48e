"""The session switch: ``ortgpu.precision`` = fp32 (default) | fp16 | bf16, read from
SessionOptions config entries at session creation.

A float16/bfloat16 session converts the loaded model once (weights included) with the graph's
inputs and outputs kept in their declared types, RUNTIME_OP_BLOCK_LIST plus the op types of
``ortgpu.precision.op_block_list`` (comma-separated) kept in float32.  Reductions, Softmax,
LayerNormalization, MatMul/Gemm and convolutions accumulate in float32 inside their kernels.
"""
from __future__ import annotations

import functools

import numpy as np
import onnx
import onnx.defs
from onnx import TensorProto

from ortgpu.errors import InvalidArgument
from ortgpu.precision.block_lists import RUNTIME_OP_BLOCK_LIST
from ortgpu.precision.convert import ConversionReport, convert_model
from ortgpu.precision.tensors import TARGET_DTYPES, lower_array

PRECISION_KEY = "ortgpu.precision"
BLOCK_LIST_KEY = "ortgpu.precision.op_block_list"
_TARGETS = {"fp32": None, "float32": None, "fp16": TensorProto.FLOAT16, "float16": TensorProto.FLOAT16,
            "bf16": TensorProto.BFLOAT16, "bfloat16": TensorProto.BFLOAT16}


def _entry(sess_options, key: str) -> str | None:
    try:
        return sess_options.get_session_config_entry(key)
    except RuntimeError:  # not set
        return None


@functools.lru_cache(maxsize=1)
def _known_op_types() -> frozenset:
    return frozenset(s.name for s in onnx.defs.get_all_schemas_with_history())


def precision_settings(sess_options) -> tuple[int | None, tuple[str, ...]]:
    """(target element type or None for float32, extra op types to keep in float32), checked:
    an unknown precision or op type name is InvalidArgument naming the entry."""
    value = _entry(sess_options, PRECISION_KEY)
    key = (value or "fp32").strip().lower()
    if key not in _TARGETS:
        raise InvalidArgument(f"Session config entry '{PRECISION_KEY}' must be one of fp32, fp16, bf16; "
                              f"got '{value}'")
    extra = tuple(op.strip() for op in (_entry(sess_options, BLOCK_LIST_KEY) or "").split(",") if op.strip())
    unknown = [op for op in extra if op not in _known_op_types()]
    if unknown:
        raise InvalidArgument(f"Session config entry '{BLOCK_LIST_KEY}' names op types that ONNX does not "
                              f"define: {unknown} (expected a comma-separated list such as 'Softmax,Gemm')")
    return _TARGETS[key], extra


def apply_precision(model: onnx.ModelProto, sess_options) -> tuple[onnx.ModelProto, ConversionReport | None]:
    """`model` converted as the session options ask (a new model), or `model` itself for fp32."""
    target, extra = precision_settings(sess_options)
    if target is None:
        return model, None
    return convert_model(model, target, keep_io_types=True, op_block_list=RUNTIME_OP_BLOCK_LIST + extra)


def match_initializer(value: np.ndarray, graph_value: np.ndarray | None) -> np.ndarray:
    """A float32 value given to add_initializer for a weight the switch made narrow, narrowed
    the same way (clamped for float16); any other value unchanged."""
    if graph_value is None or value.dtype != np.float32 or graph_value.dtype == np.float32:
        return value
    for code, dt in TARGET_DTYPES.items():
        if graph_value.dtype == dt:
            return lower_array(value, code)
    return value
