"""The ONNX function body of ``ortgpu::NhwcConv`` (made by NhwcTransformer): Transpose the
channels-last input and OHWI weight back to NCHW/OIHW, Conv, Transpose the result to NHWC."""
from __future__ import annotations

import onnx
from onnx import helper

from ortgpu.fused_ops.registry import DOMAIN, register
from ortgpu.providers.kernels import nhwc

# Conv's attributes, which NhwcConv takes over unchanged (the body refers to them by name).
CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_KINDS = {"auto_pad": onnx.AttributeProto.STRING, "group": onnx.AttributeProto.INT}


@register(nhwc.OP_TYPE)
def function_body(node, opset: int) -> onnx.FunctionProto:
    """Transpose X and W to NCHW/OIHW, Conv (attributes referenced from the call), Transpose
    back; B is an optional input, as Conv's."""
    conv = helper.make_node("Conv", ["xn", "wn", "B"], ["yn"])
    conv.attribute.extend(onnx.AttributeProto(name=name, ref_attr_name=name,
                                              type=_KINDS.get(name, onnx.AttributeProto.INTS))
                          for name in CONV_ATTRS)
    to_nchw, to_nhwc = list(nhwc.TO_NCHW), list(nhwc.TO_NHWC)
    nodes = [helper.make_node("Transpose", ["X"], ["xn"], perm=to_nchw),
             helper.make_node("Transpose", ["W"], ["wn"], perm=to_nchw),
             conv,
             helper.make_node("Transpose", ["yn"], ["Y"], perm=to_nhwc)]
    return helper.make_function(DOMAIN, nhwc.OP_TYPE, ["X", "W", "B"], ["Y"], nodes,
                                [helper.make_opsetid("", max(opset, 11))], attributes=list(CONV_ATTRS))
