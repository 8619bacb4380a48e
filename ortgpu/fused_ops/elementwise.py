"""The ONNX function body of ``ortgpu::FusedElementwise`` (made by ElementwiseChainFusion):
the program's ops, one after the other, with its scalar constants as Constant nodes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ortgpu.fused_ops.registry import DOMAIN, register
from ortgpu.providers.kernels import fused_elementwise as fe


@register(fe.OP_TYPE)
def function_body(node, opset: int) -> onnx.FunctionProto:
    """The program's ops as an ONNX function; one overload per program (``overload`` is the
    program's digest, which the saved node must name)."""
    program = fe.parse(node.attrs["program"])
    nodes = []
    for k, (value, t) in enumerate(program.consts):
        tensor = onnx.numpy_helper.from_array(np.asarray(value, dtype=t), f"c{k}")
        nodes.append(helper.make_node("Constant", [], [f"c{k}"], value=tensor))
    for k, op in enumerate(program.ops):
        n = helper.make_node(op.op_type, list(op.args), [f"t{k}"])
        n.attribute.extend(helper.make_attribute(a, v) for a, v in op.attrs)
        nodes.append(n)
    return helper.make_function(
        DOMAIN, fe.OP_TYPE, [f"i{k}" for k in range(len(program.inputs))],
        [f"t{len(program.ops) - 1}"], nodes, [helper.make_opsetid("", program.opset)],
        overload=overload_name(program))


def overload_name(program: fe.Program) -> str:
    """The function overload a FusedElementwise node of ``program`` refers to."""
    return "p" + program.digest()
