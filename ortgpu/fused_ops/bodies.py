"""ONNX function bodies of the fused ops the extended fusions create (FusedConv, FusedGemm,
Gelu, FastGelu, BiasGelu, LayerNormalization, SkipLayerNormalization, Attention), registered
in :mod:`ortgpu.fused_ops`.

Rules of every body:

* it is written with ai.onnx ops of the model's own opset (onnx.checker requires a function
  to import the model's version) and computes what the fused kernel computes;
* it depends on the node it is built for: attribute values are written into the body
  (nodes with equal attributes and the same optional inputs get equal bodies) and omitted
  optional inputs are left out of it;
* float constants (epsilon, 0.5, scale, ...) take the input's element type through CastLike
  from opset 15 on; below opset 15 they are float32, so the fusions create these ops below
  opset 15 for float32 tensors only (:func:`body_supports`).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ortgpu.fused_ops.registry import DOMAIN, register

CASTLIKE_OPSET = 15


def body_supports(elem_type: int | None, opset: int) -> bool:
    """Whether a body with float constants can be written for this element type and opset."""
    return opset >= CASTLIKE_OPSET or elem_type == onnx.TensorProto.FLOAT


class _Body:
    """Collects the nodes of one function body; names are local to the function."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self._n = 0

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"_{hint}{self._n}"

    def add(self, op: str, inputs, out: str | None = None, **attrs) -> str:
        out = out or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def const(self, value, like: str | None = None) -> str:
        """A float constant in the type of `like` (float32 below opset 15), or an int64 one."""
        arr = np.asarray(value)
        if arr.dtype.kind in "iu":
            return self.add("Constant", [], value=numpy_helper.from_array(arr.astype(np.int64)))
        c = self.add("Constant", [], value=numpy_helper.from_array(arr.astype(np.float32)))
        if like is not None and self.opset >= CASTLIKE_OPSET:
            c = self.add("CastLike", [c, like])
        return c


def _function(node, opset: int, inputs: list[str], outputs: list[str], body: _Body) -> onnx.FunctionProto:
    return helper.make_function(DOMAIN, node.op_type, inputs, outputs, body.nodes,
                                [helper.make_opsetid("", opset)], attributes=sorted(node.attrs))


def _present(node, i: int) -> bool:
    return i < len(node.inputs) and bool(node.inputs[i])


# ----------------------------------------------------------------------------- activations

def activation(b: _Body, name: str, params, x: str, out: str) -> str:
    """Nodes computing activation `name` of `x` into `out`."""
    p = [float(v) for v in params or ()]
    if name in ("Relu", "Sigmoid", "Tanh"):
        return b.add(name, [x], out)
    if name == "LeakyRelu":
        return b.add(name, [x], out, alpha=p[0])
    if name == "HardSigmoid":
        return b.add(name, [x], out, alpha=p[0], beta=p[1])
    if name == "HardSwish":
        if b.opset >= 14:
            return b.add(name, [x], out)
        return b.add("Mul", [x, b.add("HardSigmoid", [x], alpha=1 / 6, beta=0.5)], out)
    if name == "Clip":
        lo, hi = p
        if b.opset < 11:
            kw = {}
            if lo != -math.inf:
                kw["min"] = lo
            if hi != math.inf:
                kw["max"] = hi
            return b.add("Clip", [x], out, **kw)
        bounds = ["" if v in (-math.inf, math.inf) else b.const(v, like=x) for v in (lo, hi)]
        while bounds and not bounds[-1]:
            bounds.pop()
        return b.add("Clip", [x] + bounds, out)
    raise ValueError(f"no function body for activation '{name}'")


def _op_then_activation(node, opset: int, op: str, formals: list[str]) -> onnx.FunctionProto:
    """`op` on the first two formals (and the third when the node has it), plus the fourth
    when the node has it (FusedConv's Z), then the node's activation into Y."""
    b = _Body(opset)
    op_attrs = {k: v for k, v in node.attrs.items() if not k.startswith("activation")}
    y = b.add(op, formals[:3] if _present(node, 2) else formals[:2], **op_attrs)
    if len(formals) > 3 and _present(node, 3):
        y = b.add("Add", [y, formals[3]])
    activation(b, node.attrs["activation"], node.attrs.get("activation_params"), y, "Y")
    return _function(node, opset, formals, ["Y"], b)


@register("FusedConv")
def fused_conv(node, opset: int) -> onnx.FunctionProto:
    return _op_then_activation(node, opset, "Conv", ["X", "W", "B", "Z"])


@register("FusedGemm")
def fused_gemm(node, opset: int) -> onnx.FunctionProto:
    return _op_then_activation(node, opset, "Gemm", ["A", "B", "C"])


@register("FusedBatchNormalization")
def fused_batch_normalization(node, opset: int) -> onnx.FunctionProto:
    """BatchNormalization (inference, the node's other attributes) then the activation."""
    b = _Body(opset)
    formals = ["X", "scale", "B", "input_mean", "input_var"]
    bn_attrs = {k: v for k, v in node.attrs.items() if not k.startswith("activation")}
    y = b.add("BatchNormalization", formals, **bn_attrs)
    activation(b, node.attrs["activation"], node.attrs.get("activation_params"), y, "Y")
    return _function(node, opset, formals, ["Y"], b)


# ----------------------------------------------------------------------------- Gelu family

def gelu(b: _Body, x: str, out: str, approximate: str) -> str:
    """x * Phi(x) (erf form) or its tanh approximation, into `out`."""
    if b.opset >= 20:
        return b.add("Gelu", [x], out, approximate=approximate)
    if approximate == "tanh":   # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = b.add("Mul", [x, b.add("Mul", [x, x])])
        inner = b.add("Add", [x, b.add("Mul", [cube, b.const(0.044715, like=x)])])
        t = b.add("Tanh", [b.add("Mul", [inner, b.const(math.sqrt(2 / math.pi), like=x)])])
    else:                       # 0.5 x (1 + erf(x / sqrt(2)))
        t = b.add("Erf", [b.add("Div", [x, b.const(math.sqrt(2.0), like=x)])])
    one_plus = b.add("Add", [t, b.const(1.0, like=x)])
    half_x = b.add("Mul", [x, b.const(0.5, like=x)])
    return b.add("Mul", [half_x, one_plus], out)


@register("Gelu")
def gelu_body(node, opset: int) -> onnx.FunctionProto:
    b = _Body(opset)
    gelu(b, "X", "Y", "none")
    return _function(node, opset, ["X"], ["Y"], b)


@register("FastGelu")
def fast_gelu_body(node, opset: int) -> onnx.FunctionProto:
    b = _Body(opset)
    x = b.add("Add", ["X", "bias"]) if _present(node, 1) else "X"
    gelu(b, x, "Y", "tanh")
    return _function(node, opset, ["X", "bias"], ["Y"], b)


@register("BiasGelu")
def bias_gelu_body(node, opset: int) -> onnx.FunctionProto:
    b = _Body(opset)
    gelu(b, b.add("Add", ["A", "B"]), "C", "none")
    return _function(node, opset, ["A", "B"], ["C"], b)


# ----------------------------------------------------------------------------- normalization

def layer_norm(b: _Body, x: str, scale: str, bias: str | None, out: str, axis: int, epsilon: float) -> str:
    """LayerNormalization over the axes from negative `axis` to the end, into `out`."""
    if axis >= 0:
        raise ValueError("layer_norm bodies take a negative axis (the rank is unknown here)")
    if b.opset >= 17:
        return b.add("LayerNormalization", [x, scale] + ([bias] if bias else []), out,
                     axis=axis, epsilon=epsilon)
    axes = list(range(axis, 0))
    mean = b.add("ReduceMean", [x], axes=axes)
    d = b.add("Sub", [x, mean])
    var = b.add("ReduceMean", [b.add("Mul", [d, d])], axes=axes)
    std = b.add("Sqrt", [b.add("Add", [var, b.const(epsilon, like=x)])])
    y = b.add("Mul", [b.add("Div", [d, std]), scale], None if bias else out)
    return b.add("Add", [y, bias], out) if bias else y


@register("LayerNormalization")
def layer_norm_body(node, opset: int) -> onnx.FunctionProto:
    b = _Body(opset)
    layer_norm(b, "X", "Scale", "B" if _present(node, 2) else None, "Y",
               node.attrs.get("axis", -1), node.attrs.get("epsilon", 1e-5))
    return _function(node, opset, ["X", "Scale", "B"], ["Y"], b)


@register("SkipLayerNormalization")
def skip_layer_norm_body(node, opset: int) -> onnx.FunctionProto:
    b = _Body(opset)
    s = b.add("Add", ["input", "bias"]) if _present(node, 4) else "input"
    s = b.add("Add", [s, "skip"], "input_skip_bias_sum")
    layer_norm(b, s, "gamma", "beta" if _present(node, 3) else None, "output", -1,
               node.attrs.get("epsilon", 1e-5))
    return _function(node, opset, ["input", "skip", "gamma", "beta", "bias"],
                     ["output", "input_skip_bias_sum"], b)


# ----------------------------------------------------------------------------- attention

@register("Attention")
def attention_body(node, opset: int) -> onnx.FunctionProto:
    """MatMul + bias, heads split by Reshape/Transpose/Gather, the past concatenated, scaled
    scores plus the attention bias, Softmax, MatMul, heads merged."""
    b = _Body(opset)
    heads = int(node.attrs["num_heads"])
    qkv = b.add("MatMul", ["input", "weight"])
    if _present(node, 2):
        qkv = b.add("Add", [qkv, "bias"])
    split = b.add("Reshape", [qkv, b.const(np.array([0, 0, 3, heads, -1]))])
    split = b.add("Transpose", [split], perm=[2, 0, 3, 1, 4])    # (3, B, N, S, D)
    q, k, v = (b.add("Gather", [split, b.const(np.array(i))], axis=0) for i in range(3))
    past = _present(node, 4)
    present_k = b.add("Concat", ["past_key", k], "present_key", axis=2) if past else \
        b.add("Identity", [k], "present_key")
    present_v = b.add("Concat", ["past_value", v], "present_value", axis=2) if past else \
        b.add("Identity", [v], "present_value")
    scores = b.add("MatMul", [q, b.add("Transpose", [present_k], perm=[0, 1, 3, 2])])
    scores = b.add("Mul", [scores, b.const(float(node.attrs["scale"]), like=scores)])
    if _present(node, 3):
        scores = b.add("Add", [scores, "attention_bias"])
    probs = b.add("Softmax", [scores], axis=-1)
    out = b.add("Transpose", [b.add("MatMul", [probs, present_v])], perm=[0, 2, 1, 3])
    b.add("Reshape", [out, b.const(np.array([0, 0, -1]))], "output")
    return _function(node, opset, ["input", "weight", "bias", "attention_bias", "past_key", "past_value"],
                     ["output", "present_key", "present_value"], b)
