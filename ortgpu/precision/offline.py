"""The offline converters: onnxconverter-common's `convert_float_to_float16` signature and
meaning (our defaults clamp to float16's own range), and its bfloat16 twin."""
from __future__ import annotations

import onnx
from onnx import TensorProto

from ortgpu.precision.convert import convert_model
from ortgpu.precision.tensors import FLOAT16_MAX_FINITE, FLOAT16_MIN_POSITIVE


def convert_float_to_float16(model: onnx.ModelProto, min_positive_val: float = FLOAT16_MIN_POSITIVE,
                             max_finite_val: float = FLOAT16_MAX_FINITE, keep_io_types: bool = False,
                             op_block_list=None, node_block_list=None) -> onnx.ModelProto:
    """A float16 copy of `model`: ops in `op_block_list` (default DEFAULT_OP_BLOCK_LIST) and
    nodes named in `node_block_list` stay float32 behind Casts; float32 weights are clamped into
    [min_positive_val, max_finite_val] by magnitude; `keep_io_types` keeps float32 graph inputs
    and outputs.  The result passes onnx.checker and runs in onnxruntime."""
    return convert_model(model, TensorProto.FLOAT16, min_positive_val=min_positive_val,
                         max_finite_val=max_finite_val, keep_io_types=keep_io_types,
                         op_block_list=op_block_list, node_block_list=node_block_list)[0]


def convert_float_to_bfloat16(model: onnx.ModelProto, keep_io_types: bool = False, op_block_list=None,
                              node_block_list=None) -> onnx.ModelProto:
    """A bfloat16 copy of `model`, by the rules of convert_float_to_float16 (no clamping: bfloat16
    has float32's range).  Ops whose schema at the model's opset has no bfloat16 stay float32."""
    return convert_model(model, TensorProto.BFLOAT16, keep_io_types=keep_io_types,
                         op_block_list=op_block_list, node_block_list=node_block_list)[0]
