"""A device test double: an array module that behaves like CuPy for the kernels, on the CPU.

``FakeArray`` holds a NumPy array but refuses implicit conversion to NumPy, as CuPy does
(``np.asarray(x)`` raises TypeError), so a kernel that pulls a device value to the host
without saying so, or a missing copy, fails loudly.  NumPy functions and ufuncs called on
it dispatch to it (``__array_function__`` / ``__array_ufunc__``) as they do for CuPy; a
raw NumPy array mixed into such a call is refused, as CuPy refuses it.  ``.get()``,
``.item()``, ``.tolist()``, ``int()``/``float()``/``bool()`` are the explicit transfers
CuPy allows.  Arrays of dtypes CuPy lacks (float8, int4/int2/float4, object strings)
cannot be made.  bfloat16 arrays can (CuPy 14 holds ml_dtypes.bfloat16), but what CuPy 14
lacks for them is refused: ufunc.at, sorting (thrust), scipy.special (cupyx).

``FakeDeviceExecutionProvider`` runs the shared kernels on ``fake_xp`` (device
"fakedev") and counts its copies; ``FAKE_KIND`` registers the double as a device kind of
ortgpu.devices, so that OrtValues can live on "fakedev".
"""
from __future__ import annotations

import dataclasses
import functools
import threading
import types

import numpy as np

from ortgpu.devices import CPUKind, DeviceKind, register_device_kind
from ortgpu.providers.base import ExecutionProvider
from ortgpu.providers.cpu import CPUExecutionProvider
from ortgpu.providers.registry import SHARED

DEVICE = "fakedev"

# dtypes CuPy has no arrays of (kinds: V = ml_dtypes' small floats and ints, O = objects/strings)
NO_ARRAYS = frozenset({
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    "int4", "uint4", "int2", "uint2", "float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "object",
})
# what the double's default provider declines: those, and bfloat16 (Bf16FakeDeviceExecutionProvider
# takes it where the CUDA provider would)
DECLINED = NO_ARRAYS | {"bfloat16"}
# CuPy 14 functions with no bfloat16 loop (thrust's sort dispatch has none)
BF16_REFUSED = frozenset({"sort", "argsort", "lexsort", "partition", "argpartition", "msort"})

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


# Which kind of kernel is running (innermost last): device arrays may be computed on only
# inside a kernel of the double (or outside any kernel: test code, copies).  A host kernel
# that receives a device array (a missing copy) fails at its first use of it.
_running = threading.local()


def _stack() -> list:
    st = getattr(_running, "stack", None)
    if st is None:
        st = _running.stack = []
    return st


def _check_use(what: str = "computed on") -> None:
    st = _stack()
    if st and st[-1] != DEVICE:
        raise TypeError(f"a {DEVICE} array was {what} in a host kernel (a missing copy?)")


# --- stream capture (CUDA graphs) ------------------------------------------------------------
# While a capture is open, CuPy refuses what a CUDA graph cannot record: copies between the
# host and the device (cudaErrorStreamCaptureUnsupported from cudaMemcpy / a sync), and every
# cuBLAS call made through CuPy (its wrappers set the handle's stream per call, and
# ``setStream`` raises NotImplementedError while the stream captures).  ``capturing()`` opens
# such a window on the double; a capture backend of the tests runs the captured plan inside it.
_CAPTURE_REFUSED = ("operation not permitted when stream is capturing "
                    "(cudaErrorStreamCaptureUnsupported)")
_CUBLAS_REFUSED = "calling cuBLAS API during stream capture is currently unsupported"
# array functions that CuPy runs on cuBLAS
CUBLAS_FUNCTIONS = frozenset({"matmul", "dot", "vdot", "inner", "tensordot", "einsum", "matvec", "vecmat"})


class StreamCaptureUnsupported(RuntimeError):
    """What CuPy raises for a host<->device copy inside a capture (a CUDARuntimeError there)."""


def is_capturing() -> bool:
    return getattr(_running, "capturing", 0) > 0


class capturing:  # noqa: N801 - used as a context manager, like cupy's stream.begin_capture/end_capture
    """A capture window on the double (per thread, as the session stream's capture)."""

    def __enter__(self):
        _running.capturing = getattr(_running, "capturing", 0) + 1
        return self

    def __exit__(self, *exc):
        _running.capturing -= 1
        return False


def _check_no_transfer(what: str) -> None:
    if is_capturing():
        raise StreamCaptureUnsupported(f"{DEVICE}: {what}: {_CAPTURE_REFUSED}")


def _check_no_cublas(name: str) -> None:
    if is_capturing() and name in CUBLAS_FUNCTIONS:
        raise NotImplementedError(f"{DEVICE}: {name}: {_CUBLAS_REFUSED}")


# --- streams and events (stream-ordered memory reuse) ----------------------------------------
# A CUDA stream runs its work in order; work on two streams is unordered unless one waits on an
# event of the other.  FakeStream counts the work queued on it (``launch``) and the work that
# has run (``synchronize`` runs all of it); an event marks a position in a stream's queue and is
# done once the stream's work up to it ran.  ``wait_event`` notes the event a stream's later
# work is ordered after, and running a stream (``synchronize``) first runs what it waits on.
# The surface is CuPy's: Stream.record/wait_event/synchronize/ptr, Event.done/synchronize.
class FakeEvent:
    def __init__(self, stream: "FakeStream", position: int):
        self.stream, self.position = stream, position

    @property
    def done(self) -> bool:
        return self.stream.completed >= self.position

    def synchronize(self) -> None:
        self.stream.run_until(self.position)


class FakeStream:
    _next_ptr = 0x1000

    def __init__(self, name: str = "stream"):
        FakeStream._next_ptr += 0x10
        self.ptr, self.name = FakeStream._next_ptr, name
        self.queued = self.completed = 0
        self.waits: list[tuple[int, FakeEvent]] = []   # (queue position when waited, event)
        self.host_waits = 0
        self.capturing = False

    def is_capturing(self) -> bool:
        return self.capturing

    def launch(self, n: int = 1) -> int:
        """Queue ``n`` pieces of work; the position of the last."""
        self.queued += n
        return self.queued

    def record(self, event=None) -> FakeEvent:
        return FakeEvent(self, self.queued)

    def wait_event(self, event: FakeEvent) -> None:
        self.waits.append((self.queued, event))

    def run_until(self, position: int) -> None:
        for at, event in self.waits:
            if at < position:
                event.synchronize()
        self.completed = max(self.completed, min(position, self.queued))
        self.host_waits += 1

    def synchronize(self) -> None:
        self.run_until(self.queued)

    def ordered_after(self, other: "FakeStream", position: int) -> bool:
        """Whether work queued on this stream from now on runs after ``other``'s work up to
        ``position`` (done already, or waited on through an event at or past it)."""
        return other.completed >= position or any(
            e.stream is other and e.position >= position for _, e in self.waits)

    def __repr__(self):
        return f"FakeStream({self.name}, queued={self.queued}, completed={self.completed})"


def _check_dtype(dt: np.dtype) -> None:
    if dt.name in NO_ARRAYS or (dt.kind in "OUSV" and dt.name != "bfloat16"):
        raise TypeError(f"{DEVICE} arrays cannot hold dtype {dt}")


def _is_bf16(v) -> bool:
    return isinstance(v, FakeArray) and v.dtype.name == "bfloat16"


def _check_bf16(name: str, args, kwargs=None) -> None:
    """CuPy 14 has no bfloat16 loop for ``name`` (sorting, cupyx.scipy.special): TypeError."""
    vals = list(args) + list((kwargs or {}).values())
    if any(_is_bf16(v) or (isinstance(v, (list, tuple)) and any(_is_bf16(x) for x in v)) for v in vals):
        raise TypeError(f"{DEVICE}: {name} does not support bfloat16 (as in CuPy 14)")


class FakeArray:
    """A device array of the double: NumPy inside, CuPy's manners outside."""

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a: np.ndarray):
        _check_dtype(a.dtype)
        self._a = a

    # --- refusal of implicit conversion, explicit transfers ---------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def get(self, stream=None, order="C", out=None):
        _check_no_transfer("a copy to the host (.get())")
        return self._a.copy()

    def _host_read(self, what: str):
        """The array, for a read on the host (`what`), refused where it cannot happen: in a
        host kernel (a missing copy) or while a stream captures."""
        _check_use("read")
        _check_no_transfer(f"a read on the host ({what})")
        return self._a

    def item(self, *args):
        return self._host_read(".item()").item(*args)

    def tolist(self):
        return self._host_read("tolist()").tolist()

    def __bool__(self):
        return bool(self._host_read("bool()"))

    def __int__(self):
        return int(self._host_read("int()"))

    def __float__(self):
        return float(self._host_read("float()"))

    def __complex__(self):
        return complex(self._host_read("complex()"))

    def __index__(self):
        return self._host_read("an index").__index__()

    def __repr__(self):
        return f"FakeArray({self._a!r})"

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __len__(self):
        return len(self._a)

    # --- attributes -----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    mT = property(lambda self: _wrap(np.swapaxes(self._a, -1, -2)))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))

    def __getattr__(self, name):
        """Methods of ndarray (reshape, astype, sum, ...) with their arguments unwrapped."""
        attr = getattr(np.ndarray, name, None)
        if attr is None or name.startswith("_") or not callable(attr):
            raise AttributeError(f"'FakeArray' object has no attribute '{name}'")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            _check_use()
            if name in BF16_REFUSED:
                _check_bf16(name, (self,))
            return _wrap(method(*_unwrap(args), **_unwrap(kwargs)))
        return call

    # --- indexing -------------------------------------------------------------------------
    def __getitem__(self, index):
        _check_use()
        return _wrap(self._a[_unwrap_index(index)])

    def __setitem__(self, index, value):
        _check_use()
        # CuPy accepts host values on assignment (it copies them to the device)
        if isinstance(value, np.ndarray) and value.ndim > 0:
            _check_no_transfer("a copy from the host (assignment of a NumPy array)")
        self._a[_unwrap_index(index)] = value._a if isinstance(value, FakeArray) else value

    # --- NumPy protocols: dispatch here, as NumPy does for CuPy -----------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if getattr(np, ufunc.__name__, None) is not ufunc:
            return NotImplemented  # a ufunc from elsewhere (scipy.special): CuPy refuses it too
        _check_use()
        _check_no_cublas(ufunc.__name__)
        out = kwargs.get("out")
        args = _unwrap(inputs, strict=True)
        kw = _unwrap(kwargs, strict=True)
        res = getattr(ufunc, method)(*args, **kw)
        if out is not None:
            return out[0] if isinstance(out, tuple) and len(out) == 1 else out
        return _wrap(res)

    def __array_function__(self, func, types_, args, kwargs):
        _check_use()
        _check_no_cublas(func.__name__)
        if func.__name__ in BF16_REFUSED:
            _check_bf16(func.__name__, args, kwargs)
        res = func(*_unwrap(args, strict=True), **_unwrap(kwargs, strict=True))
        return _wrap(res)

    # --- operators (through the ufuncs, so that they follow __array_ufunc__) ----------------
    def __add__(self, o): return np.add(self, o)
    def __radd__(self, o): return np.add(o, self)
    def __sub__(self, o): return np.subtract(self, o)
    def __rsub__(self, o): return np.subtract(o, self)
    def __mul__(self, o): return np.multiply(self, o)
    def __rmul__(self, o): return np.multiply(o, self)
    def __truediv__(self, o): return np.true_divide(self, o)
    def __rtruediv__(self, o): return np.true_divide(o, self)
    def __floordiv__(self, o): return np.floor_divide(self, o)
    def __rfloordiv__(self, o): return np.floor_divide(o, self)
    def __mod__(self, o): return np.remainder(self, o)
    def __rmod__(self, o): return np.remainder(o, self)
    def __pow__(self, o): return np.power(self, o)
    def __rpow__(self, o): return np.power(o, self)
    def __matmul__(self, o): return np.matmul(self, o)
    def __rmatmul__(self, o): return np.matmul(o, self)
    def __and__(self, o): return np.bitwise_and(self, o)
    def __rand__(self, o): return np.bitwise_and(o, self)
    def __or__(self, o): return np.bitwise_or(self, o)
    def __ror__(self, o): return np.bitwise_or(o, self)
    def __xor__(self, o): return np.bitwise_xor(self, o)
    def __rxor__(self, o): return np.bitwise_xor(o, self)
    def __lshift__(self, o): return np.left_shift(self, o)
    def __rshift__(self, o): return np.right_shift(self, o)
    def __lt__(self, o): return np.less(self, o)
    def __le__(self, o): return np.less_equal(self, o)
    def __gt__(self, o): return np.greater(self, o)
    def __ge__(self, o): return np.greater_equal(self, o)
    def __eq__(self, o): return np.equal(self, o)
    def __ne__(self, o): return np.not_equal(self, o)
    def __neg__(self): return np.negative(self)
    def __pos__(self): return np.positive(self)
    def __abs__(self): return np.absolute(self)
    def __invert__(self): return np.invert(self)

    def __iadd__(self, o):
        return self._inplace(np.add, o)

    def __isub__(self, o):
        return self._inplace(np.subtract, o)

    def __imul__(self, o):
        return self._inplace(np.multiply, o)

    def __itruediv__(self, o):
        return self._inplace(np.true_divide, o)

    def _inplace(self, ufunc, o):
        _check_use()
        ufunc(self._a, _unwrap(o, strict=True), out=self._a)
        return self

    __hash__ = None


def _wrap(res):
    if isinstance(res, np.ndarray):
        return FakeArray(res)
    if isinstance(res, np.generic) and not isinstance(res, (np.str_, np.bytes_, np.object_)):
        return FakeArray(np.asarray(res))  # CuPy returns 0-d arrays where NumPy returns scalars
    if isinstance(res, tuple):
        return tuple(_wrap(r) for r in res)
    if isinstance(res, list):
        return [_wrap(r) for r in res]
    return res


def _unwrap(obj, strict: bool = False):
    """FakeArray -> its NumPy array, through tuples, lists and dicts; with `strict`, a raw
    NumPy array is refused (CuPy does not mix host arrays into device computations)."""
    if isinstance(obj, FakeArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        if strict:
            raise TypeError(f"Unsupported type {type(obj)}: a host array mixed into a {DEVICE} "
                            f"computation (a missing copy?)")
        return obj
    if isinstance(obj, tuple):
        return tuple(_unwrap(o, strict) for o in obj)
    if isinstance(obj, list):
        return [_unwrap(o, strict) for o in obj]
    if isinstance(obj, dict):
        return {k: _unwrap(v, strict) for k, v in obj.items()}
    return obj


def _has_host_array(args, kwargs) -> bool:
    vals = list(args) + list(kwargs.values())
    return any(isinstance(v, np.ndarray) or (isinstance(v, (list, tuple)) and _has_host_array(v, {}))
               for v in vals)


def _unwrap_index(index):
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) for i in index)
    if isinstance(index, FakeArray):
        return index._a
    return index


# --- the array module ----------------------------------------------------------------------

# Functions that take host data and make device arrays (cupy.asarray(numpy_array) copies it).
_CREATORS = frozenset({
    "asarray", "array", "asanyarray", "ascontiguousarray", "zeros", "ones", "empty", "full",
    "arange", "linspace", "logspace", "eye", "identity", "tri", "frombuffer", "fromiter",
    "zeros_like", "ones_like", "empty_like", "full_like", "indices", "meshgrid",
})
_PASS = (type, np.dtype, float, int, bool, complex, str, types.ModuleType)


class _Namespace:
    """A wrapped NumPy namespace (numpy, numpy.linalg, numpy.fft, numpy.random)."""

    def __init__(self, base, name):
        self._base = base
        self.__name__ = name

    def __getattr__(self, name):
        attr = getattr(self._base, name)
        if name == "ndarray":
            return FakeArray
        if isinstance(attr, _PASS) or name in ("errstate", "iinfo", "finfo", "dtype", "result_type",
                                                "promote_types", "can_cast", "issubdtype", "newaxis"):
            if isinstance(attr, types.ModuleType):
                return _Namespace(attr, f"{self.__name__}.{name}")
            return attr
        if not callable(attr):
            return attr
        if name == "default_rng":
            return lambda seed=None: _Generator(np.random.default_rng(seed))
        if isinstance(attr, np.ufunc):
            return _UFunc(attr)
        creator = name in _CREATORS

        def call(*args, **kwargs):
            _check_no_cublas(name)
            if name in BF16_REFUSED:
                _check_bf16(name, args, kwargs)
            if creator and _has_host_array(args, kwargs):
                _check_no_transfer(f"{name} of a NumPy array (a copy from the host)")
            if creator:
                res = attr(*_unwrap(args), **_unwrap(kwargs))
            else:
                res = attr(*_unwrap(args, strict=True), **_unwrap(kwargs, strict=True))
            return _wrap(res)
        call.__name__ = name
        return call


# CuPy's ufunc.at exists for these only (its scatter operations), and only for these target
# dtypes (CuPy 14.2's scatter_add / scatter_max / scatter_min tables): anything else raises
# TypeError there, so it raises here too
_AT_BASE = frozenset({"int32", "int64", "uint32", "uint64", "float32", "float64"})
AT_DTYPES = {"add": _AT_BASE | {"float16"}, "subtract": _AT_BASE | {"float16"},
             "maximum": _AT_BASE, "minimum": _AT_BASE}
_AT_UFUNCS = frozenset(AT_DTYPES)


class _UFunc:
    """A NumPy ufunc called on device arrays; ``.at`` only where CuPy has it."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__

    def __call__(self, *args, **kwargs):
        _check_no_cublas(self.__name__)
        out = kwargs.get("out")
        res = self._uf(*_unwrap(args, strict=True), **_unwrap(kwargs, strict=True))
        return out if out is not None else _wrap(res)

    def at(self, a, indices, b=None):
        _check_use()
        if self.__name__ not in _AT_UFUNCS:
            raise NotImplementedError(f"{DEVICE}: {self.__name__}.at is not supported (as in CuPy)")
        if not isinstance(a, FakeArray):
            raise TypeError(f"{self.__name__}.at: the target must be a {DEVICE} array")
        if a.dtype.name not in AT_DTYPES[self.__name__]:
            raise TypeError(f"{DEVICE}: {self.__name__}.at does not support dtype {a.dtype} (as in CuPy)")
        args = (a._a, _unwrap_index(indices)) + (() if b is None else (_unwrap(b, strict=True),))
        self._uf.at(*args)

    def __getattr__(self, name):  # reduce, accumulate, outer, ...
        method = getattr(self._uf, name)
        if not callable(method):
            return method
        return lambda *a, **k: _wrap(method(*_unwrap(a, strict=True), **_unwrap(k, strict=True)))


class _Generator:
    """cupy.random.Generator's surface used by the random kernels."""

    def __init__(self, g):
        self._g = g

    def __getattr__(self, name):
        method = getattr(self._g, name)
        return lambda *a, **k: _wrap(method(*_unwrap(a, strict=True), **_unwrap(k, strict=True)))


fake_xp = _Namespace(np, "fake_xp")
fake_xp.linalg = _Namespace(np.linalg, "fake_xp.linalg")
fake_xp.fft = _Namespace(np.fft, "fake_xp.fft")
fake_xp.random = _Namespace(np.random, "fake_xp.random")


class _SpecialNamespace(_Namespace):
    """scipy.special on device arrays (what cupyx.scipy.special is to CuPy)."""

    def __getattr__(self, name):
        attr = getattr(self._base, name)

        def call(*a, **k):
            _check_bf16(f"scipy.special.{name}", a, k)   # cupyx.scipy.special has no bfloat16 loops
            return _wrap(attr(*_unwrap(a, strict=True), **_unwrap(k, strict=True)))
        return call


def _scipy_special():
    import scipy.special
    return _SpecialNamespace(scipy.special, "fake_xp.scipy_special")


fake_xp.scipy_special = _scipy_special()


def is_fake(value) -> bool:
    return isinstance(value, FakeArray)


def _on_device(value) -> bool:
    if value is None or isinstance(value, FakeArray):
        return True
    if isinstance(value, list):
        return all(_on_device(v) for v in value)
    return False


@functools.lru_cache(maxsize=None)
def _in_host_context(fn):
    @functools.wraps(fn)
    def run(ctx, *args, **kwargs):
        st = _stack()
        st.append("cpu")
        try:
            return fn(ctx, *args, **kwargs)
        finally:
            st.pop()
    return run


@functools.lru_cache(maxsize=None)
def _checked(fn):
    @functools.wraps(fn)
    def run(ctx, *args, **kwargs):
        st = _stack()
        st.append(DEVICE)
        try:
            res = fn(ctx, *args, **kwargs)
        finally:
            st.pop()
        for i, r in enumerate(res if type(res) is tuple else (res,)):
            if not _on_device(r):
                raise TypeError(f"{ctx.op_type} kernel on {DEVICE} returned a {type(r).__name__} as "
                                f"output {i}, not a {DEVICE} array")
        return res
    return run


class CheckedCPUExecutionProvider(CPUExecutionProvider):
    """The CPU provider whose kernels run in a host context: a device array reaching one of
    them (a missing copy) fails at its first use instead of being silently dispatched."""

    def kernel_for(self, op_type, domain, opset):
        k = super().kernel_for(op_type, domain, opset)
        if k is None:
            return None
        return dataclasses.replace(k, fn=_in_host_context(k.fn))


def providers() -> list:
    """[double, checked CPU]: the provider list the tests use."""
    return [FakeDeviceExecutionProvider(), CheckedCPUExecutionProvider()]


class FakeDeviceExecutionProvider(ExecutionProvider):
    """A device provider on the double: shared kernels only, copies counted."""

    name = "FakeDeviceExecutionProvider"
    device = DEVICE
    kernel_sources = (SHARED,)
    declined_dtypes = DECLINED

    def __init__(self, options=None):
        super().__init__(options)
        self.copies_from_host = 0
        self.copies_to_host = 0

    @property
    def xp(self):
        return fake_xp

    def kernel_for(self, op_type, domain, opset):
        """The shared kernel, wrapped so that a host array among its outputs fails loudly."""
        k = super().kernel_for(op_type, domain, opset)
        if k is None:
            return None
        return dataclasses.replace(k, fn=_checked(k.fn))

    def from_host(self, value):
        if isinstance(value, FakeArray):
            raise TypeError(f"from_host got a {DEVICE} array (the value is already on the device)")
        if not isinstance(value, (np.ndarray, np.generic)):
            raise TypeError(f"from_host got a {type(value).__name__}, expected a NumPy array")
        _check_no_transfer("from_host")
        self.copies_from_host += 1
        return FakeArray(np.array(value, copy=True))

    def to_host(self, value):
        if not isinstance(value, FakeArray):
            raise TypeError(f"to_host got a {type(value).__name__}, expected a {DEVICE} array "
                            f"(the value is not on the device)")
        self.copies_to_host += 1
        return value.get()


class Bf16FakeDeviceExecutionProvider(FakeDeviceExecutionProvider):
    """The double taking bfloat16 nodes where the CUDA provider takes them (a CUDA registration
    for the op that declares bfloat16, or a shared kernel of its BF16_SHARED_OPS); it runs
    the shared kernels, which is what those CUDA launchers fall back to for bfloat16."""

    name = "Bf16FakeDeviceExecutionProvider"
    declined_dtypes = NO_ARRAYS

    def __init__(self, options=None):
        super().__init__(options)
        from ortgpu.providers.cuda.provider import CUDAExecutionProvider
        self.cuda = CUDAExecutionProvider(device_count=None)

    def accepts(self, node, kernel, input_types, output_types=()) -> bool:
        if not super().accepts(node, kernel, input_types, output_types):
            return False
        from ortgpu.providers.cuda.provider import _has_bfloat16
        if not any(_has_bfloat16(tp) for tp in list(input_types) + list(output_types or ())):
            return True
        k = self.cuda.kernel_for(kernel.op_type, kernel.domain, kernel.since)
        return k is not None and self.cuda.accepts(node, k, input_types, output_types)


class FakeDeviceKind(DeviceKind):
    """The double's arrays as a device kind (ortgpu.devices): OrtValues and IOBinding can hold
    them as values on device "fakedev".  Its own copies (test setup, reading results) are
    counted apart from the provider's, which are the copies a run makes."""

    name = DEVICE

    def __init__(self):
        self.uploads = 0
        self.downloads = 0

    def owns(self, array) -> bool:
        return isinstance(array, FakeArray)

    def holds(self, dtype) -> bool:
        dt = np.dtype(dtype)
        return dt.name == "bfloat16" or (dt.name not in DECLINED and dt.kind not in "OUSV")

    def empty(self, shape, dtype, device_id):
        return FakeArray(np.empty(shape, dtype))

    def from_numpy(self, array, device_id):
        self.uploads += 1
        return FakeArray(np.array(array, copy=True))

    def to_numpy(self, array):
        self.downloads += 1
        return array.get()

    def copy_into(self, dst, src, wait=True):
        data = src._a if isinstance(src, FakeArray) else src
        np.copyto(dst._a, data.reshape(dst.shape), casting="no")

    def data_ptr(self, array):
        return int(array._a.ctypes.data) if array.size else 0

    def from_pointer(self, ptr, shape, dtype, device_id):
        return FakeArray(CPUKind().from_pointer(ptr, shape, dtype, device_id))


FAKE_KIND = FakeDeviceKind()
register_device_kind(FAKE_KIND)
