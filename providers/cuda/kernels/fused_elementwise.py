"""One generated CUDA kernel per ``ortgpu::FusedElementwise`` program, and its launcher.

:func:`cuda_source` turns a program (providers/kernels/fused_elementwise.py) into CUDA C:
the shared header and the op formulas of ``activations.cu`` and ``elementwise_binary.cu``
(``unary_apply``, ``binary_apply``: the fused ops compute exactly what the unfused raw
kernels compute), then a device function evaluating the program on one element and two
kernels around it:

* ``fused_flat``: every input contiguous with the output or a single element (step 1 or 0);
* ``fused_bcast<I>``: any broadcast, through ``BroadcastOf<N>`` (one stride row per input),
  with int or long long index arithmetic.

Rules of the generated code: values live in the compute type of their element type (float
for float16 and float32, double for float64, bool); a float16 result is rounded to float16
after every op, as the unfused kernels store it; constants are literals of their exact
value (hex floats); Pow by a constant 2 is ``x * x`` (what powf would round to anyway).

The module of a program is compiled once per device when the session is created (the
kernel's ``prepare`` hook, called by the executor while building its plan) and cached.
Inputs of other element types than the program's, more than 8 dims after collapsing, or
arrays that are not CuPy's go to the shared kernel.

Never run on a GPU: written and checked (NVRTC compile for sm_80/sm_90, semantics against
NumPy on the host emulator when present) without a device.
"""
from __future__ import annotations

import functools
import math
import threading

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import fused_elementwise as fe
from ortgpu.providers.dtype_sets import BOOL, FLOAT
from ortgpu.providers.registry import kernel

# Sources whose device functions the generated code calls (their kernels stay uninstantiated).
FORMULA_SOURCES = ("activations.cu", "elementwise_binary.cu")
FLAT = "fused_flat"
INDEX_TYPES = ("int", "long long")

# element type -> (C type in memory, C type of arithmetic)
CTYPES = {"float16": ("half_t", "float"), "float32": ("float", "float"),
          "float64": ("double", "double"), "bool": ("bool", "bool")}

# ops of activations.cu's unary_apply: op -> (UnaryOp, attribute for p0, attribute for p1)
UNARY_APPLY = {
    "Relu": ("OP_RELU", None, None), "LeakyRelu": ("OP_LEAKY_RELU", "alpha", None),
    "Sigmoid": ("OP_SIGMOID", None, None), "Tanh": ("OP_TANH", None, None),
    "Erf": ("OP_ERF", None, None), "HardSigmoid": ("OP_HARD_SIGMOID", "alpha", "beta"),
    "HardSwish": ("OP_HARD_SWISH", None, None), "Softplus": ("OP_SOFTPLUS", None, None),
    "Elu": ("OP_ELU", "alpha", None),
}
# ops of elementwise_binary.cu's binary_apply
BINARY_APPLY = {"Add": "OP_ADD", "Sub": "OP_SUB", "Mul": "OP_MUL", "Div": "OP_DIV",
                "Equal": "OP_EQUAL", "Less": "OP_LESS", "Greater": "OP_GREATER",
                "LessOrEqual": "OP_LESS_EQUAL", "GreaterOrEqual": "OP_GREATER_EQUAL"}
# single-expression unary ops: op -> format with {x}, {C} (compute type) and {f} ("f" or "")
UNARY_EXPR = {
    "Exp": "m_exp({x})", "Log": "m_log({x})", "Sqrt": "m_sqrt({x})", "Neg": "(-{x})",
    "Abs": "m_abs({x})", "Reciprocal": "({C}(1) / {x})", "Floor": "floor{f}({x})",
    "Ceil": "ceil{f}({x})", "Identity": "{x}", "Softsign": "({x} / ({C}(1) + m_abs({x})))",
}
FLT_MAX = float(np.finfo(np.float32).max)


def literal(value: float, ctype: str) -> str:
    """``value`` as a C expression of type ``ctype`` (float, double, bool), exactly (the value
    is first rounded to that type)."""
    if ctype == "bool":
        return "true" if value else "false"
    if ctype == "float":
        v = float(np.float32(value))
        special = {math.inf: "__int_as_float(0x7f800000)", -math.inf: "__int_as_float(0xff800000)"}
        nan = "__int_as_float(0x7fc00000)"
        suffix = "f"
    elif ctype == "double":
        v = float(value)
        special = {math.inf: "__longlong_as_double(0x7ff0000000000000LL)",
                   -math.inf: "__longlong_as_double(0xfff0000000000000ULL)"}
        nan = "__longlong_as_double(0x7ff8000000000000LL)"
        suffix = ""
    else:
        raise ValueError(f"no literal of C type {ctype!r}")
    if math.isnan(v):
        return nan
    if v in special:
        return special[v]
    return f"({v.hex()}{suffix})"


def _compute(dtype: str) -> str:
    return CTYPES[dtype][1]


def _attr_literal(op: fe.Op, name: str | None, ctype: str) -> str:
    """An op attribute (alpha, beta) in the compute type, as the raw kernels receive it."""
    if name is None:
        return f"{ctype}(0)"
    return literal(op.attr_dict[name], ctype)


def _pow(program: fe.Program, op: fe.Op, x: str, C: str) -> str:
    exponent = op.args[1]
    value, etype = program.consts[int(exponent[1:])]
    if value == 2:
        return f"({x} * {x})"
    if value == 1:
        return x
    # as the shared kernel: computed in x's type, or in double for a float64 exponent;
    # an integer exponent is first converted to x's type
    W = "double" if etype == "float64" else C
    if etype in ("int32", "int64"):
        value = float(np.asarray(value).astype(program.value_dtype(op.args[0])))
    return f"static_cast<{C}>(m_pow(static_cast<{W}>({x}), {literal(value, W)}))"


def _clip(program: fe.Program, op: fe.Op, x: str, C: str) -> str:
    dtype = op.dtype
    bounds = []
    if program.opset < 11:   # attributes; +-FLT_MAX means open, values rounded to x's type
        for name, open_value in (("min", -FLT_MAX), ("max", FLT_MAX)):
            v = op.attr_dict.get(name)
            bounds.append(None if v is None or v == open_value else float(np.asarray(v).astype(dtype)))
    else:
        for a in op.args[1:3]:
            bounds.append(None if not a else float(np.asarray(program.consts[int(a[1:])][0]).astype(dtype)))
    bounds += [None] * (2 - len(bounds))
    expr = x
    if bounds[0] is not None:
        expr = f"max_nan({expr}, {literal(bounds[0], C)})"
    if bounds[1] is not None:
        expr = f"min_nan({expr}, {literal(bounds[1], C)})"
    return expr


def op_expression(program: fe.Program, op: fe.Op) -> str:
    """The C expression of one op, on operand variables named as in the program."""
    C = _compute(op.dtype)
    args = [a for a in op.args]
    x = args[0]
    t = op.op_type
    if t in UNARY_APPLY:
        code, p0, p1 = UNARY_APPLY[t]
        return f"unary_apply<{code}>({x}, {_attr_literal(op, p0, C)}, {_attr_literal(op, p1, C)})"
    if t == "Gelu":
        code = {"none": "OP_GELU_ERF", "tanh": "OP_GELU_TANH"}[op.attr_dict.get("approximate", "none")]
        return f"unary_apply<{code}>({x}, {C}(0), {C}(0))"
    if t in UNARY_EXPR:
        return UNARY_EXPR[t].format(x=x, C=C, f="f" if C == "float" else "")
    if t in BINARY_APPLY:
        operand = _compute(program.value_dtype(x))
        return f"binary_apply<{BINARY_APPLY[t]}, {operand}, {C}>({x}, {args[1]})"
    if t in ("Max", "Min"):
        fn = "max_nan" if t == "Max" else "min_nan"
        expr = x
        for a in args[1:]:
            expr = f"{fn}({expr}, {a})"
        return expr
    if t == "Pow":
        return _pow(program, op, x, C)
    if t == "Clip":
        return _clip(program, op, x, C)
    if t == "Not":
        return f"(!{x})"
    if t == "Where":
        return f"({x} ? {args[1]} : {args[2]})"
    if t == "Cast":
        target = CTYPES[op.dtype][0]
        return f"load(Convert<{target}, {_compute(program.value_dtype(x))}>::run({x}))"
    raise fe.ProgramError(f"no CUDA code for op {t!r}")


def eval_function(program: fe.Program) -> str:
    """``fused_eval``: the program on one element, inputs and result in compute types."""
    params = ", ".join(f"{_compute(t)} i{k}" for k, t in enumerate(program.inputs))
    lines = [f"__device__ __forceinline__ {_compute(program.dtype)} fused_eval({params}) {{"]
    for k, (value, t) in enumerate(program.consts):
        if t in CTYPES:
            lines.append(f"    const {_compute(t)} c{k} = {literal(value, _compute(t))};")
    for k, op in enumerate(program.ops):
        expr = op_expression(program, op)
        if op.dtype == "float16":
            expr = f"round_to_half({expr})"
        lines.append(f"    const {_compute(op.dtype)} t{k} = {expr};  // {op.op_type}")
    lines.append(f"    return t{len(program.ops) - 1};")
    lines.append("}")
    return "\n".join(lines)


def kernels_source(program: fe.Program) -> str:
    """The two kernels around ``fused_eval``."""
    n = len(program.inputs)
    out_t = CTYPES[program.dtype][0]
    ins = ", ".join(f"const {CTYPES[t][0]}* __restrict__ in{k}" for k, t in enumerate(program.inputs))
    steps = ", ".join(f"int s{k}" for k in range(n))
    flat_args = ", ".join(f"load(in{k}[i * s{k}])" for k in range(n))
    bcast_args = ", ".join(f"load(in{k}[offset[{k}]])" for k in range(n))
    return f"""
__global__ void {FLAT}({ins}, {out_t}* __restrict__ out, i64 n, {steps}) {{
    for (i64 i = grid_start(); i < n; i += grid_step()) {{
        out[i] = store<{out_t}>(fused_eval({flat_args}));
    }}
}}

template <typename I>
__global__ void fused_bcast({ins}, {out_t}* __restrict__ out, i64 n, BroadcastOf<{n}> bc) {{
    for (i64 i = grid_start(); i < n; i += grid_step()) {{
        I offset[{n}];
        broadcast_offsets<I, {n}>(bc, static_cast<I>(i), offset);
        out[i] = store<{out_t}>(fused_eval({bcast_args}));
    }}
}}
"""


ROUND_TO_HALF = """
// float16 results are rounded after every op, as the unfused kernels store them
__device__ __forceinline__ float round_to_half(float v) { return half_to_float(float_to_half(v)); }
"""


@functools.lru_cache(maxsize=1)
def _prelude() -> str:
    parts = [f'#line 1 "{cu.COMMON_HEADER}"\n{(cu.KERNEL_DIR / cu.COMMON_HEADER).read_text()}']
    for src in FORMULA_SOURCES:
        parts.append(f'#line 1 "{src}"\n{(cu.KERNEL_DIR / src).read_text()}')
    return "\n".join(parts)


@functools.lru_cache(maxsize=256)
def cuda_source(program_text: str) -> str:
    """The whole CUDA translation unit of a program (given as its ``program`` text)."""
    program = fe.parse(program_text)
    body = (f'#line 1 "fused_{program.digest()}"\n// FusedElementwise program {program.text()}\n'
            f"{ROUND_TO_HALF}\n{eval_function(program)}\n{kernels_source(program)}")
    return f"{_prelude()}\n{body}"


def kernel_names() -> tuple[str, ...]:
    """The name expressions compiled for every program."""
    return (FLAT,) + tuple(f"fused_bcast<{i}>" for i in INDEX_TYPES)


# ---------------------------------------------------------------- compiled modules (GPU only)

_lock = threading.Lock()
_modules: dict[tuple[int, str], "CompiledProgram"] = {}


class CompiledProgram:
    """A program's RawModule and its kernels, looked up once: ``RawModule.get_function`` makes
    a new Function (a ``cuModuleGetFunction``) per call, too slow for every launch."""

    def __init__(self, module, names):
        self.module = module
        self.functions = {name: module.get_function(name) for name in names}  # compiles now

    def get_function(self, name: str):
        return self.functions[name]


def compiled_module(program_text: str) -> CompiledProgram:
    """The compiled kernels of a program on the current device, compiled on first use.
    Never run on a GPU."""
    import cupy

    key = (cupy.cuda.runtime.getDevice(), program_text)
    mod = _modules.get(key)
    if mod is None:
        with _lock:
            mod = _modules.get(key)
            if mod is None:
                raw = cupy.RawModule(code=cuda_source(program_text), options=cu.OPTIONS,
                                     name_expressions=list(kernel_names()))
                mod = _modules[key] = CompiledProgram(raw, kernel_names())
    return mod


def launch_plan(program: fe.Program, inputs):
    """(output shape, BroadcastPlan) for ``inputs``, or None when the kernels cannot take them
    (another element type than the program's, or too many dims)."""
    if len(inputs) != len(program.inputs):
        return None
    for x, t in zip(inputs, program.inputs):
        if np.dtype(x.dtype).name != t:
            return None
    out_shape = np.broadcast_shapes(*(tuple(x.shape) for x in inputs))
    plan = cu.plan_broadcast(out_shape, [
        (x.shape, cu.element_strides(x.shape, x.strides, x.itemsize)) for x in inputs])
    return None if plan is None else (out_shape, plan)


def launch_args(program: fe.Program, inputs, out, plan: cu.BroadcastPlan) -> tuple[str, tuple]:
    """(kernel name, arguments) of the launch for a plan."""
    if plan.steps is not None:
        return FLAT, (*inputs, out, np.int64(plan.size), *(np.int32(s) for s in plan.steps))
    name = f"fused_bcast<{cu.index_ctype(plan)}>"
    return name, (*inputs, out, np.int64(plan.size), plan.struct(len(inputs)))


def run_fused(program_text: str, inputs):
    """The program on CuPy arrays with one kernel launch, or None when not handled here.
    Never run on a GPU."""
    program = fe.parse(program_text)
    planned = launch_plan(program, inputs)
    if planned is None:
        return None
    import cupy

    out_shape, plan = planned
    out = cupy.empty(out_shape, dtype=program.dtype)
    if plan.size == 0:
        return out
    name, args = launch_args(program, inputs, out, plan)
    cu.launch_elementwise(compiled_module(program_text).get_function(name), plan.size, args)
    return out


@kernel(fe.OP_TYPE, since=1, domain=fe.DOMAIN, provider="cuda", types={"*": FLOAT | BOOL})
def FusedElementwise(ctx, *inputs, program):
    """The program as one generated CUDA kernel; the shared kernel where not handled."""
    if cu.on_device(ctx, *inputs):
        y = run_fused(program, inputs)
        if y is not None:
            return y
    return fe.FusedElementwise(ctx, *inputs, program=program)


def prepare(ctx, *, program):
    """Check the program and compile its module while the session is created (CuPy only)."""
    fe.prepare(ctx, program=program)
    if getattr(ctx.xp, "__name__", "") == "cupy":
        compiled_module(program)


FusedElementwise.prepare = prepare
