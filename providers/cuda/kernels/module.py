"""Compile the raw CUDA sources of this folder with CuPy and launch their kernels.

A *unit* is one .cu file compiled with a list of template instantiations (NVRTC name
expressions), for instance ``elementwise_binary.cu`` for ``float``.  The launcher modules
declare their units when they are imported (:func:`declare`); the loader compiles a unit
the first time one of its kernels is asked for on a device and keeps the module, and
``tests/test_cuda_compile.py`` compiles every declared unit for sm_80 and sm_90: the
declarations are the one list both work from.

CuPy is imported only inside the functions that need a GPU, so this module imports
without it.  The GPU-side functions here (``function``, ``launch_*``, ``sm_count``) have
never run on a GPU: no device was available when they were written.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import threading

import numpy as np

KERNEL_DIR = pathlib.Path(__file__).resolve().parent
COMMON_HEADER = "common.cuh"
# Options used by the loader and by the compile test (CuPy adds -arch itself, and -ftz=true:
# float32 subnormal results flush to zero on the GPU).  The sources need C++17 (if constexpr),
# the default of NVRTC 12 and 13; saying it keeps it so.
OPTIONS: tuple[str, ...] = ("--std=c++17",)
MAX_DIMS = 8   # ORTGPU_MAX_DIMS in common.cuh

# C spelling of each element type the kernels are instantiated for.
CTYPE = {
    np.dtype(np.float32): "float", np.dtype(np.float16): "half_t", np.dtype(np.float64): "double",
    np.dtype(np.int8): "signed char", np.dtype(np.int16): "short", np.dtype(np.int32): "int",
    np.dtype(np.int64): "long long", np.dtype(np.uint8): "unsigned char",
    np.dtype(np.uint16): "unsigned short", np.dtype(np.uint32): "unsigned int",
    np.dtype(np.uint64): "unsigned long long", np.dtype(np.bool_): "bool",
}
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))
# Kernels that only move elements are instantiated per element width, not per type: the
# unsigned integer of each width in bytes.
WIDTH_CTYPE = {1: "unsigned char", 2: "unsigned short", 4: "unsigned int", 8: "unsigned long long"}


def movable(dtype) -> bool:
    """True for the element types a width-instantiated kernel moves: bool, the integers and
    the float types of 1, 2, 4 or 8 bytes, bfloat16 (ml_dtypes; 16-bit words to the kernels)."""
    dt = np.dtype(dtype)
    return (dt.kind in "biuf" or dt.name == "bfloat16") and dt.itemsize in WIDTH_CTYPE


def compute_scalar(dtype, value):
    """``value`` as a NumPy scalar of the kernels' compute type for ``dtype`` (float32 for
    float16): CuPy passes a scalar argument with its own width, which must match the C
    parameter exactly."""
    dt = np.dtype(dtype)
    return np.float32(value) if dt == np.float16 else dt.type(value)


# ---------------------------------------------------------------- units

@dataclasses.dataclass(frozen=True)
class Unit:
    """One compilation: a source file and the template instantiations compiled with it."""
    source: str
    key: str
    names: tuple[str, ...]


_UNITS: dict[tuple[str, str], Unit] = {}


def declare(source: str, key: str, names) -> Unit:
    """Record that ``source`` is compiled, under ``key``, with the name expressions ``names``."""
    unit = Unit(source, key, tuple(names))
    old = _UNITS.get((source, key))
    if old is not None and old != unit:
        raise ValueError(f"CUDA unit {source}[{key}] declared twice with different instantiations")
    if not (KERNEL_DIR / source).is_file():
        raise FileNotFoundError(f"CUDA source {source} is not in {KERNEL_DIR}")
    _UNITS[(source, key)] = unit
    return unit


# The com.microsoft launchers (contrib_*.py): their domain and the element types their raw
# kernels are instantiated for (float64 and bfloat16 go to the shared kernels).
MS_DOMAIN = "com.microsoft"
CONTRIB_TYPES = (np.dtype(np.float32), np.dtype(np.float16))


def declare_templates(source: str, *templates: str, types=CONTRIB_TYPES) -> dict:
    """One unit of ``source`` per element type, with each of ``templates`` instantiated as
    ``name<ctype>``: ``{dtype: Unit}``, what ``template_function`` looks a kernel up in."""
    return {dt: declare(source, CTYPE[dt], [f"{t}<{CTYPE[dt]}>" for t in templates]) for dt in types}


def template_function(units: dict, dtype, template: str):
    """The compiled ``template<ctype of dtype>`` of ``units[dtype]`` (units from
    ``declare_templates``), so a launcher names its kernel once."""
    return function(units[dtype], f"{template}<{CTYPE[dtype]}>")


def units() -> list[Unit]:
    """Every declared unit, in a stable order."""
    return [_UNITS[k] for k in sorted(_UNITS)]


@functools.lru_cache(maxsize=None)
def source_text(source: str) -> str:
    """The code compiled for ``source``: the shared header, then the file (with #line marks
    so compiler messages name the right file and line)."""
    header = (KERNEL_DIR / COMMON_HEADER).read_text()
    body = (KERNEL_DIR / source).read_text()
    return (f'#line 1 "{COMMON_HEADER}"\n{header}\n'
            f'#line 1 "{source}"\n{body}')


# ---------------------------------------------------------------- compiled modules (GPU only)

_lock = threading.Lock()
_modules: dict[tuple[int, str, str], object] = {}
_functions: dict[tuple[int, str, str, str], object] = {}


def function(unit: Unit, name: str):
    """The compiled kernel ``name`` of ``unit`` on the current device (compiled on first use).

    Never run on a GPU yet."""
    import cupy

    dev = cupy.cuda.runtime.getDevice()
    fkey = (dev, unit.source, unit.key, name)
    fn = _functions.get(fkey)
    if fn is not None:
        return fn
    if name not in unit.names:
        raise KeyError(f"{name!r} is not among the instantiations of {unit.source}[{unit.key}]")
    with _lock:
        mkey = (dev, unit.source, unit.key)
        mod = _modules.get(mkey)
        if mod is None:
            mod = cupy.RawModule(code=source_text(unit.source), options=OPTIONS,
                                 name_expressions=list(unit.names))
            _modules[mkey] = mod
        fn = mod.get_function(name)
        _functions[fkey] = fn
    return fn


@functools.lru_cache(maxsize=None)
def sm_count(device_id: int) -> int:
    """Number of streaming multiprocessors of a device (never run on a GPU yet)."""
    import cupy
    return int(cupy.cuda.runtime.getDeviceProperties(device_id)["multiProcessorCount"])


ELEMENTWISE_THREADS = 256
_BLOCKS_PER_SM = 8   # enough resident blocks to hide latency; grid-stride loops do the rest


def launch_elementwise(fn, n: int, args) -> None:
    """Launch a grid-stride element-wise kernel over ``n`` elements on the current stream."""
    if n <= 0:
        return
    import cupy
    blocks = min(math.ceil(n / ELEMENTWISE_THREADS),
                 sm_count(cupy.cuda.runtime.getDevice()) * _BLOCKS_PER_SM)
    fn((blocks,), (ELEMENTWISE_THREADS,), args)


def row_launch_config(rows: int, cols: int) -> tuple[tuple[int], tuple[int, int]]:
    """Grid and block of the row kernels (softmax_rows, layernorm_rows): one warp per row,
    four rows per block, for rows of up to 1024 elements; one block per row beyond, with
    enough threads that each handles about eight elements (at most 1024)."""
    if cols <= 1024:
        rows_per_block = 4
        return (math.ceil(rows / rows_per_block),), (32, rows_per_block)
    threads = min(1024, 32 * math.ceil(math.ceil(cols / 8) / 32))
    return (rows,), (threads, 1)


# ---------------------------------------------------------------- broadcasting plans (host side)

def broadcast_dtype(operands: int = 3) -> np.dtype:
    """The NumPy layout of ``BroadcastOf<operands>`` in common.cuh."""
    return np.dtype([("ndim", "<i8"), ("shape", "<i8", (MAX_DIMS,)),
                     ("stride", "<i8", (operands, MAX_DIMS))])


BROADCAST_DTYPE = broadcast_dtype(3)   # struct Broadcast (three operands)


@dataclasses.dataclass
class BroadcastPlan:
    """How a broadcast kernel reads its operands: ``shape`` of the (collapsed) output and
    per operand its element strides; ``steps`` is set when the flat kernel suffices."""
    shape: tuple[int, ...]
    strides: list[tuple[int, ...]]
    size: int
    steps: tuple[int, ...] | None      # flat path: 0 (scalar) or 1 per operand
    wide_index: bool                   # offsets need 64-bit arithmetic

    def struct(self, operands: int = 3) -> np.ndarray:
        """The ``BroadcastOf<operands>`` struct (``Broadcast`` by default) as a one-element
        NumPy array (CuPy passes it by value)."""
        if len(self.strides) > operands:
            raise ValueError(f"{len(self.strides)} operands do not fit BroadcastOf<{operands}>")
        info = np.zeros(1, broadcast_dtype(operands))
        nd = len(self.shape)
        info["ndim"] = nd
        info["shape"][0, :nd] = self.shape
        for k, st in enumerate(self.strides):
            info["stride"][0, k, :nd] = st
        return info


def element_strides(shape, byte_strides, itemsize) -> tuple[int, ...]:
    """Strides in elements (CuPy reports bytes; views of one dtype are always multiples)."""
    for s in byte_strides:
        if s % itemsize:
            raise ValueError(f"stride {s} is not a multiple of the element size {itemsize}")
    return tuple(s // itemsize for s in byte_strides)


def plan_broadcast(out_shape, operands) -> BroadcastPlan | None:
    """Plan reading each operand, given as (shape, element strides), at every position of
    the contiguous ``out_shape``; None when more than MAX_DIMS dims remain after collapsing.

    Size-1 output dims are dropped, broadcast dims get stride 0, and neighbouring dims that
    every operand walks contiguously merge, so a same-shape contiguous op becomes one dim."""
    out_shape = tuple(int(d) for d in out_shape)
    nd = len(out_shape)
    aligned = []
    for shape, strides in operands:
        pad = nd - len(shape)
        if pad < 0:
            raise ValueError(f"operand of shape {tuple(shape)} does not broadcast to {out_shape}")
        st = [0] * pad
        for d, (size, s) in enumerate(zip(shape, strides)):
            if size == out_shape[pad + d]:
                st.append(int(s))
            elif size == 1:
                st.append(0)
            else:
                raise ValueError(f"operand of shape {tuple(shape)} does not broadcast to {out_shape}")
        aligned.append(st)
    dims = [d for d in range(nd) if out_shape[d] != 1]
    shape = [out_shape[d] for d in dims]
    strides = [[st[d] for d in dims] for st in aligned]
    # merge dim i-1 into dim i when each operand steps over dim i-1 as one run of dim i
    i = len(shape) - 1
    while i > 0:
        if all(st[i - 1] == st[i] * shape[i] for st in strides):
            shape[i] *= shape[i - 1]
            del shape[i - 1]
            for st in strides:
                del st[i - 1]
        i -= 1
    size = math.prod(out_shape)
    if len(shape) > MAX_DIMS:
        return None
    steps = None
    if len(shape) == 0:
        steps = tuple(0 for _ in strides)
    elif len(shape) == 1 and all(st[0] in (0, 1) for st in strides):
        steps = tuple(st[0] for st in strides)
    reach = max([sum((n - 1) * abs(s) for n, s in zip(shape, st)) for st in strides] + [size])
    return BroadcastPlan(tuple(shape), [tuple(st) for st in strides], size, steps,
                         wide_index=reach >= 2 ** 31 - 1)


def index_ctype(plan: BroadcastPlan) -> str:
    """The C index type a broadcast kernel is instantiated with for ``plan``."""
    return "long long" if plan.wide_index else "int"


def on_device(ctx, *arrays) -> bool:
    """True when the kernel runs on CuPy and every given array (None aside) is a CuPy array.
    Anything else, a device test double included, goes to the shared kernels."""
    xp = ctx.xp
    if getattr(xp, "__name__", "") != "cupy":
        return False
    return all(a is None or isinstance(a, xp.ndarray) for a in arrays)
