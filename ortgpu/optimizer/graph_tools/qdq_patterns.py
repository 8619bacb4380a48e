"""Recognize the pieces of a QDQ graph that the QDQ passes (ReluQuantFusion,
QDQSelectorActionTransformer) rewrite: QuantizeLinear / DequantizeLinear nodes (ai.onnx or
com.microsoft) with constant scale and zero point, what they quantize to, and whether two of
them use the same parameters.

Rules (as onnxruntime's QDQ selectors): a Q or DQ takes part only when its scale and zero point
are constants (a run cannot change them) and its zero point is given (its element type is the
quantized type); per-tensor means one scale and one zero point; a per-axis DQ names its axis;
blocked quantization (``block_size``) never takes part.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from onnx import TensorProto

from ortgpu.graph import Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView

MS_DOMAIN = "com.microsoft"
INT8_TYPES = frozenset({TensorProto.INT8, TensorProto.UINT8})


@dataclasses.dataclass
class QParams:
    """A Q or DQ node with constant parameters: the node, its quantized and float sides, the
    names and values of its scale and zero point, the axis of a per-axis one (None when per
    tensor) and the quantized element type."""
    node: Node
    quantized: str      # the DQ's input, the Q's output
    real: str           # the DQ's output, the Q's input
    scale: str
    zero_point: str
    scale_value: np.ndarray
    zp_value: np.ndarray
    axis: int | None
    qtype: int

    @property
    def per_tensor(self) -> bool:
        return self.axis is None


def is_q(node: Node | None) -> bool:
    return node is not None and node.op_type == "QuantizeLinear" and node.domain in ("", MS_DOMAIN)


def is_dq(node: Node | None) -> bool:
    return node is not None and node.op_type == "DequantizeLinear" and node.domain in ("", MS_DOMAIN)


def qparams(view: GraphView, node: Node) -> QParams | None:
    """The parameters of a Q or DQ node when they are constants, else None."""
    if len(node.inputs) < 3 or not node.inputs[2] or node.attrs.get("block_size", 0):
        return None
    scale, zp = view.const(node.inputs[1]), view.const(node.inputs[2])
    if scale is None or zp is None or scale.size != zp.size or scale.dtype.kind != "f":
        return None
    quantized, real = (node.inputs[0], node.outputs[0]) if is_dq(node) else (node.outputs[0], node.inputs[0])
    axis = None
    if scale.size > 1:
        rank = view.rank(quantized)
        if rank is None or scale.ndim != 1:
            return None
        axis = int(node.attrs.get("axis", 1)) % rank
    return QParams(node, quantized, real, node.inputs[1], node.inputs[2], scale, zp, axis,
                   elem_type(view.graph, quantized) or 0)


def dq_input(view: GraphView, name: str) -> QParams | None:
    """The DequantizeLinear producing `name`, with constant parameters, else None."""
    node = view.producer.get(name) if name else None
    return qparams(view, node) if is_dq(node) else None


def q_output(view: GraphView, node: Node) -> QParams | None:
    """The QuantizeLinear that alone reads `node`'s single output (not a graph output), with
    constant parameters, else None."""
    if len(node.outputs) != 1:
        return None
    reader = view.only_reader(node.outputs[0])
    return qparams(view, reader) if is_q(reader) and reader.inputs[0] == node.outputs[0] else None


def same_params(a: QParams, b: QParams) -> bool:
    """Whether two Q/DQ nodes quantize alike: one type and equal scales and zero points."""
    return (a.qtype == b.qtype and a.axis == b.axis and a.scale_value.shape == b.scale_value.shape
            and np.array_equal(a.scale_value, b.scale_value)
            and np.array_equal(a.zp_value.astype(np.int64), b.zp_value.astype(np.int64)))


def type_min(qtype: int) -> int | None:
    """The smallest value of an 8- or 16-bit integer element type."""
    return {TensorProto.UINT8: 0, TensorProto.INT8: -128, TensorProto.UINT16: 0,
            TensorProto.INT16: -32768}.get(qtype)
