"""``ortgpu::FusedElementwise``: a DAG of element-wise ai.onnx ops run as one node.

The optimizer's ElementwiseChainFusion pass (ortgpu/optimizer/elementwise_fusion.py) writes
the DAG into the node's ``program`` attribute, a JSON text (see :class:`Program`).  The
shared kernel here runs the program op by op through the ai.onnx ops' own shared kernels,
so its results are those of the unfused nodes by construction: it is the CPU oracle of the
generated CUDA kernel (providers/cuda/kernels/fused_elementwise.py), which evaluates the
same program per element in registers.

Program rules:

* operands are named ``i<k>`` (the node's k-th input, a tensor that broadcasts to the
  output), ``c<k>`` (an embedded scalar constant), ``t<k>`` (the result of op k) or ``""``
  (an omitted optional input, Clip's bounds);
* each op carries its ai.onnx type, operands, attributes (schema defaults filled in) and
  the element type of its result; ops run in order and the last one is the node's output;
* every value has one of the element types in :data:`ELEMENT_TYPES`; a float16 value is
  rounded to float16 after each op, exactly as the unfused kernels store it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

import numpy as np

from ortgpu.errors import InvalidArgument, InvalidGraph
from ortgpu.providers.dtype_sets import BOOL, FLOAT
from ortgpu.providers.registry import KernelContext, kernel, lookup

OP_TYPE = "FusedElementwise"
DOMAIN = "ortgpu"
ELEMENT_TYPES = frozenset({"float16", "float32", "float64", "bool"})
FLOAT_TYPES = frozenset({"float16", "float32", "float64"})
CONST_TYPES = ELEMENT_TYPES | {"int32", "int64"}     # Pow may take an integer exponent
MAX_INPUTS = 16    # tensor inputs of one fused node (one BroadcastOf<N> stride row each)
MAX_OPS = 128

# ai.onnx ops a program may contain: op -> (operand kinds, result kind).  Operand kinds:
# "f" a float value, "b" a bool value, "f*" one or more floats, "k" a scalar constant or
# omitted ("" allowed), "n" any numeric scalar constant.  Result kinds: "f" same float type
# as the first operand, "b" bool, "cast" the type named by the `to` attribute.
OPS: dict[str, tuple[tuple[str, ...], str]] = {
    **{op: (("f",), "f") for op in (
        "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Erf", "HardSigmoid", "HardSwish", "Softplus",
        "Softsign", "Elu", "Gelu", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Floor",
        "Ceil", "Identity")},
    **{op: (("f", "f"), "f") for op in ("Add", "Sub", "Mul", "Div")},
    "Pow": (("f", "n"), "f"),
    "Max": (("f*",), "f"),
    "Min": (("f*",), "f"),
    **{op: (("f", "f"), "b") for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual")},
    "Not": (("b",), "b"),
    "Where": (("b", "f", "f"), "f"),
    "Clip": (("f", "k", "k"), "f"),
    "Cast": (("*",), "cast"),
}


@dataclasses.dataclass(frozen=True)
class Op:
    """One instruction: ``op_type(*args, **attrs)`` giving a value of element type ``dtype``."""
    op_type: str
    args: tuple[str, ...]
    attrs: tuple[tuple[str, object], ...]   # sorted (name, value) pairs, JSON values
    dtype: str

    @property
    def attr_dict(self) -> dict:
        return dict(self.attrs)


@dataclasses.dataclass(frozen=True)
class Program:
    """The expression a FusedElementwise node computes (see the module docstring)."""
    opset: int                                # ai.onnx opset of the ops
    inputs: tuple[str, ...]                   # element type of each tensor input
    consts: tuple[tuple[float, str], ...]     # (value, element type) of each scalar constant
    ops: tuple[Op, ...]

    @property
    def dtype(self) -> str:
        """Element type of the output."""
        return self.ops[-1].dtype

    def text(self) -> str:
        """The canonical JSON form stored in the node's ``program`` attribute."""
        return json.dumps({
            "opset": self.opset, "inputs": list(self.inputs),
            "consts": [[v, t] for v, t in self.consts],
            "ops": [[o.op_type, list(o.args), dict(o.attrs), o.dtype] for o in self.ops],
        }, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """A short stable name for the program (kernel cache key, function overload)."""
        return hashlib.sha256(self.text().encode()).hexdigest()[:16]

    def value_dtype(self, name: str) -> str:
        """Element type of operand ``name`` (``i<k>``, ``c<k>`` or ``t<k>``)."""
        kind, k = name[0], int(name[1:])
        if kind == "i":
            return self.inputs[k]
        if kind == "c":
            return self.consts[k][1]
        return self.ops[k].dtype


class ProgramError(InvalidGraph):
    """A program text that is not a valid FusedElementwise program."""


def _const_value(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProgramError(f"constant {v!r} is not a number")
    return float(v)


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Program:
    """The Program of a ``program`` attribute; ProgramError says what is wrong with it."""
    try:
        raw = json.loads(text)
        opset = int(raw["opset"])
        inputs = tuple(str(t) for t in raw["inputs"])
        consts = tuple((_const_value(v), str(t)) for v, t in raw["consts"])
        ops = tuple(Op(str(o[0]), tuple(str(a) for a in o[1]), tuple(sorted(dict(o[2]).items())), str(o[3]))
                    for o in raw["ops"])
    except ProgramError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise ProgramError(f"FusedElementwise program is malformed ({type(e).__name__}: {e}): {text[:200]!r}") from None
    program = Program(opset, inputs, consts, ops)
    validate(program)
    return program


def validate(program: Program) -> None:
    """Check operand references, element types and op types; ProgramError names the fault."""
    if not program.ops:
        raise ProgramError("FusedElementwise program has no ops")
    if not program.inputs or len(program.inputs) > MAX_INPUTS or len(program.ops) > MAX_OPS:
        raise ProgramError(f"FusedElementwise program has {len(program.inputs)} inputs and {len(program.ops)} "
                           f"ops; expected 1..{MAX_INPUTS} inputs and at most {MAX_OPS} ops")
    for t in program.inputs:
        if t not in ELEMENT_TYPES:
            raise ProgramError(f"FusedElementwise input type {t!r} is not one of {sorted(ELEMENT_TYPES)}")
    for _, t in program.consts:
        if t not in CONST_TYPES:
            raise ProgramError(f"FusedElementwise constant type {t!r} is not one of {sorted(CONST_TYPES)}")
    for k, op in enumerate(program.ops):
        if op.op_type not in OPS:
            raise ProgramError(f"FusedElementwise op {k} is {op.op_type!r}, not one of {sorted(OPS)}")
        if op.dtype not in ELEMENT_TYPES:
            raise ProgramError(f"FusedElementwise op {k} ({op.op_type}) has element type {op.dtype!r}")
        for a in op.args:
            if a == "":
                continue
            ok = len(a) > 1 and a[0] in "ict" and a[1:].isdigit()
            n = int(a[1:]) if ok else -1
            limit = {"i": len(program.inputs), "c": len(program.consts), "t": k}.get(a[0], 0)
            if not ok or n >= limit:
                raise ProgramError(f"FusedElementwise op {k} ({op.op_type}) reads {a!r}, which is not defined before it")


# ---------------------------------------------------------------- the shared kernel

def has_shared_kernel(op_type: str, opset: int) -> bool:
    """Whether the interpreter can run ``op_type`` at this ai.onnx opset."""
    return lookup(op_type, "", opset, ("shared",)) is not None


def _op_kernel(op_type: str, opset: int):
    k = lookup(op_type, "", opset, ("shared",))
    if k is None:
        raise ProgramError(f"no shared kernel for {op_type} at ai.onnx opset {opset}")
    return k.fn


def evaluate(ctx, program: Program, inputs):
    """Run ``program`` on ``inputs`` (arrays of ``ctx.xp``) op by op with the shared kernels."""
    xp = ctx.xp
    if len(inputs) != len(program.inputs):
        raise InvalidArgument(f"FusedElementwise node '{ctx.node_name}' has {len(inputs)} inputs; "
                         f"its program expects {len(program.inputs)}")
    for k, (x, t) in enumerate(zip(inputs, program.inputs)):
        if np.dtype(x.dtype).name != t:
            raise InvalidArgument(f"FusedElementwise node '{ctx.node_name}': input {k} has element type "
                            f"{np.dtype(x.dtype).name}; its program expects {t}")
    env = {f"i{k}": x for k, x in enumerate(inputs)}
    for k, (v, t) in enumerate(program.consts):
        env[f"c{k}"] = xp.asarray(np.asarray(v, dtype=t))
    for k, op in enumerate(program.ops):
        sub = KernelContext(xp, ctx.provider, ctx.node_name, op.op_type, program.opset, ep=ctx.ep)
        args = [env[a] if a else None for a in op.args]
        env[f"t{k}"] = _op_kernel(op.op_type, program.opset)(sub, *args, **op.attr_dict)
    return env[f"t{len(program.ops) - 1}"]


@kernel(OP_TYPE, since=1, domain=DOMAIN, types={"*": FLOAT | BOOL})
def FusedElementwise(ctx, *inputs, program):
    """The element-wise DAG in ``program`` (a JSON text), op by op with the shared kernels."""
    return evaluate(ctx, parse(program), inputs)


def prepare(ctx, *, program):
    """Check the program once, when the session is created; ProgramError names the node."""
    try:
        parse(program)
    except ProgramError as e:
        raise ProgramError(f"node '{ctx.node_name}': {e.message}") from None


FusedElementwise.prepare = prepare
