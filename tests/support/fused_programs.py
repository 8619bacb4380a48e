"""FusedElementwise programs that use every op the program format allows, for the codegen
tests (compile, semantics against onnxruntime) and the GPU and emulator tiers."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ortgpu.fused_ops.elementwise import function_body
from ortgpu.graph import Node
from ortgpu.providers.kernels import fused_elementwise as fe

UNARY = [("Relu", {}), ("LeakyRelu", {"alpha": 0.1}), ("Sigmoid", {}), ("Tanh", {}), ("Erf", {}),
         ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}), ("HardSwish", {}), ("Softplus", {}),
         ("Softsign", {}), ("Elu", {"alpha": 0.7}), ("Gelu", {"approximate": "none"}),
         ("Gelu", {"approximate": "tanh"}), ("Neg", {}), ("Abs", {}), ("Floor", {}), ("Ceil", {}),
         ("Identity", {})]
COMPARISONS = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]


class _Builder:
    def __init__(self, dtype):
        self.dtype = dtype
        self.consts: list[tuple[float, str]] = []
        self.ops: list[fe.Op] = []

    def const(self, value, dtype=None) -> str:
        self.consts.append((float(value), dtype or self.dtype))
        return f"c{len(self.consts) - 1}"

    def op(self, op_type, *args, dtype=None, **attrs) -> str:
        self.ops.append(fe.Op(op_type, tuple(args), tuple(sorted(attrs.items())), dtype or self.dtype))
        return f"t{len(self.ops) - 1}"


def all_ops(dtype: str) -> fe.Program:
    """Inputs x, y (same float type) and mask (bool); the output (of type ``dtype``) sums one
    term per op, so every op shows in it.  Values stay finite for finite inputs."""
    b = _Builder(dtype)
    x, y, mask = "i0", "i1", "i2"
    half, two, three, lo, hi = (b.const(0.5), b.const(2, "int64"), b.const(3.0, "float64"),
                                b.const(-0.5), b.const(0.75))
    terms = [b.op(op, x, **attrs) for op, attrs in UNARY]
    ax = b.op("Abs", x)
    terms += [b.op("Exp", b.op("Mul", x, half)), b.op("Log", b.op("Add", ax, hi)), b.op("Sqrt", ax),
              b.op("Reciprocal", b.op("Add", ax, hi))]
    terms += [b.op(op, x, y) for op in ("Add", "Sub", "Mul")]
    terms += [b.op("Div", x, b.op("Add", b.op("Abs", y), hi)), b.op("Pow", x, two),
              b.op("Pow", ax, three), b.op("Max", x, y, half), b.op("Min", x, y)]
    for op in COMPARISONS:
        terms.append(b.op("Where", b.op(op, b.op("Floor", x), b.op("Floor", y), dtype="bool"), x, y))
    terms.append(b.op("Where", b.op("Not", mask, dtype="bool"), x, lo))
    terms += [b.op("Clip", x, lo, hi), b.op("Clip", x, "", hi), b.op("Clip", x, lo, "")]
    wide = "float32" if dtype == "float64" else "float64"
    terms.append(b.op("Cast", b.op("Cast", x, dtype=wide, to=_code(wide)), to=_code(dtype)))
    terms.append(b.op("Where", b.op("Cast", b.op("Floor", x), dtype="bool", to=_code("bool")), y, half))
    acc = terms[0]
    for t in terms[1:]:
        acc = b.op("Add", acc, t)
    return fe.Program(20, (dtype, dtype, "bool"), tuple(b.consts), tuple(b.ops))


def clip_attributes(dtype: str) -> fe.Program:
    """Clip of opset 6 (bounds as attributes, one left open at FLT_MAX) after a Sigmoid."""
    b = _Builder(dtype)
    s = b.op("Sigmoid", "i0")
    b.op("Clip", s, min=0.25, max=float(np.finfo(np.float32).max))
    return fe.Program(10, (dtype,), tuple(b.consts), tuple(b.ops))


def bool_output() -> fe.Program:
    """float16 in, bool out: not (x < sigmoid(y))."""
    b = _Builder("float16")
    b.op("Not", b.op("Less", "i0", b.op("Sigmoid", "i1"), dtype="bool"), dtype="bool")
    return fe.Program(17, ("float16", "float16"), (), tuple(b.ops))


def mixed_types() -> fe.Program:
    """float16 in, computed in float32, float16 out; constants of several types."""
    b = _Builder("float32")
    x = b.op("Cast", "i0", to=_code("float32"))
    m = b.op("Min", b.op("Max", x, b.const(-np.inf)), b.const(np.inf))
    g = b.op("Add", m, b.op("Mul", x, b.const(-0.0)))
    y = b.op("Cast", b.op("Add", b.op("Tanh", x), b.op("Relu", g)), dtype="float16", to=_code("float16"))
    b.op("Mul", y, b.const(1.5, "float16"), dtype="float16")
    return fe.Program(17, ("float16",), tuple(b.consts), tuple(b.ops))


def _code(dtype: str) -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


PROGRAMS = {
    "all_ops_f32": all_ops("float32"), "all_ops_f16": all_ops("float16"), "all_ops_f64": all_ops("float64"),
    "clip_attrs_f32": clip_attributes("float32"), "clip_attrs_f16": clip_attributes("float16"),
    "mixed_types": mixed_types(), "bool_output": bool_output(),
}


def body_model(program: fe.Program) -> onnx.ModelProto:
    """The program's function body as a plain model (inputs x0.., output y): the oracle runs it."""
    node = Node("fused", fe.OP_TYPE, fe.DOMAIN, 1, [], [], {"program": program.text()})
    fp = function_body(node, program.opset)
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(t)), None)
              for n, t in zip(fp.input, program.inputs)]
    out_t = helper.np_dtype_to_tensor_dtype(np.dtype(program.dtype))
    graph = helper.make_graph(list(fp.node), "body", inputs, [helper.make_tensor_value_info(fp.output[0], out_t, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", program.opset)], ir_version=8)


def sample_inputs(program: fe.Program, shapes, seed=0) -> list[np.ndarray]:
    """Random inputs of the program's types with the given shapes (floats about N(0, 2),
    some exactly integral so that Floor/Equal see ties)."""
    rng = np.random.default_rng(seed)
    out = []
    for t, shape in zip(program.inputs, shapes):
        if t == "bool":
            out.append(rng.random(shape) > 0.5)
        else:
            v = np.asarray(rng.standard_normal(shape) * 2)
            ints = np.asarray(rng.random(shape) < 0.1)
            v[ints] = np.round(v[ints])
            out.append(v.astype(t))
    return out
