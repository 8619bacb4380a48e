"""Launch emulated kernels the way CuPy launches real ones.

``RawModule(code=..., options=..., name_expressions=[...])`` and ``get_function(name)``
mirror CuPy's; the returned :class:`Function` is called as CuPy's is,
``fn(grid, block, args, shared_mem=0, stream=None)``, and packs each argument by CuPy's
rules (``cupy/cuda/function.pyx``, ``_pointer``):

* a device array (the stand-in's ``ndarray``) -> a pointer to its first element;
* ``None`` -> a null pointer (8 zero bytes);
* a NumPy array of size one -> its bytes, by value (how a struct such as ``Broadcast``
  travels); a NumPy array of another size is refused, as CuPy refuses it;
* a NumPy scalar -> its bytes; a Python int, float, bool -> int64, float64, bool.

Before the launch each packed argument is checked against the kernel's parameter, which the
compiled entry describes (pointer or value, size, kind): a pointer parameter takes a device
array whose itemsize is the pointee's size (and kind, except that an unsigned pointee takes
any element type of its width: kernels that only move bytes) or None; a value parameter
takes a scalar or size-one array of exactly its size and kind.  A mismatch is a TypeError
naming the kernel, the argument and both types: on a GPU it would silently read garbage.
"""
from __future__ import annotations

import ctypes
import dataclasses
import signal
import threading

import numpy as np

from support.cuda_emulator import build
from support.cuda_emulator import device_memory

_KINDS = {"f": "floating point", "h": "float16", "b": "bool", "i": "signed integer",
          "u": "unsigned integer", "V": "struct"}


class EmulatedLaunchError(RuntimeError):
    """The emulated kernel failed (a fault, a barrier not every thread reaches, a bad launch
    configuration); the message names the kernel, block and thread."""


class _LaunchArgs(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared_mem", ctypes.c_size_t),
                ("args", ctypes.POINTER(ctypes.c_void_p)), ("nargs", ctypes.c_int),
                ("error", ctypes.c_char_p), ("error_len", ctypes.c_size_t),
                ("fault_addr", ctypes.c_void_p), ("fault_signal", ctypes.c_int)]


class _ParamInfo(ctypes.Structure):
    _fields_ = [("is_pointer", ctypes.c_int), ("size", ctypes.c_int), ("kind", ctypes.c_char)]


@dataclasses.dataclass(frozen=True)
class Param:
    """One kernel parameter: pointer or value, size of the value or pointee, kind letter."""
    is_pointer: bool
    size: int
    kind: str

    def describe(self) -> str:
        what = f"{_KINDS.get(self.kind, self.kind)} of {self.size} bytes"
        return f"pointer to {what}" if self.is_pointer else what


@dataclasses.dataclass
class Launch:
    """One emulated launch, as recorded for tests."""
    name: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int


# Every launch of the process is serialized: the fault handlers are process-wide.
_launch_lock = threading.Lock()
# Callbacks told of each launch (the fixture's launch log).
listeners: list = []


def _dtype_kind(dt: np.dtype) -> str:
    if dt == np.float16:
        return "h"
    return {"f": "f", "b": "b", "i": "i", "u": "u", "V": "V"}.get(dt.kind, "?")


def _kind_ok(param: Param, dt: np.dtype) -> bool:
    if param.kind == "V":
        return True
    if param.is_pointer and param.kind == "u":   # a byte-moving kernel: any type of that width
        return True
    return _dtype_kind(dt) == param.kind


def _scalar_value(arg):
    """A by-value argument as a NumPy array of one element (CuPy's conversion rules)."""
    if isinstance(arg, np.ndarray):
        if arg.size != 1:
            raise TypeError(f"a numpy.ndarray of shape {arg.shape} cannot be a kernel argument: only "
                            "arrays of size one are passed by value (a device array was meant?)")
        return np.ascontiguousarray(arg).reshape(1)
    if isinstance(arg, np.generic):
        return np.asarray(arg).reshape(1)
    if isinstance(arg, bool):
        return np.asarray([arg], dtype=np.bool_)
    if isinstance(arg, int):
        return np.asarray([arg], dtype=np.uint64 if arg >= 2 ** 63 else np.int64)
    if isinstance(arg, float):
        return np.asarray([arg], dtype=np.float64)
    raise TypeError(f"unsupported kernel argument type {type(arg).__name__}")


class Function:
    """An emulated kernel: ``fn(grid, block, args, shared_mem=0, stream=None)``."""

    def __init__(self, lib: ctypes.CDLL, index: int, name: str):
        self.name = name
        self._launch = getattr(lib, f"ortgpu_emu_launch_{index}")
        self._launch.argtypes = [ctypes.POINTER(_LaunchArgs)]
        self._launch.restype = ctypes.c_int
        describe = getattr(lib, f"ortgpu_emu_params_{index}")
        describe.argtypes = [ctypes.POINTER(_ParamInfo), ctypes.c_int]
        describe.restype = ctypes.c_int
        infos = (_ParamInfo * 64)()
        n = describe(infos, 64)
        self.params = tuple(Param(bool(p.is_pointer), p.size, p.kind.decode()) for p in infos[:n])

    def _pack(self, i: int, arg, param: Param):
        """(the bytes holder, its address) of argument i, checked against its parameter."""
        where = f"argument {i} of {self.name}"
        if isinstance(arg, device_memory.ndarray):
            if not param.is_pointer:
                raise TypeError(f"{where}: a device array given for a by-value {param.describe()}")
            if param.size and (arg.itemsize != param.size or not _kind_ok(param, arg.dtype)):
                raise TypeError(f"{where}: a {arg.dtype} array given for a {param.describe()}")
            holder = ctypes.c_void_p(arg.__array_interface__["data"][0] if arg.size else 0)
            return holder, ctypes.addressof(holder)
        if arg is None:
            if not param.is_pointer:
                raise TypeError(f"{where}: None (a null pointer) given for a by-value {param.describe()}")
            holder = ctypes.c_void_p(0)
            return holder, ctypes.addressof(holder)
        value = _scalar_value(arg)
        if param.is_pointer:
            raise TypeError(f"{where}: a host value of type {value.dtype} given for a {param.describe()} "
                            "(a device array was meant?)")
        if value.itemsize != param.size or not _kind_ok(param, value.dtype):
            raise TypeError(f"{where}: a value of type {value.dtype} ({value.itemsize} bytes) given for a "
                            f"{param.describe()}")
        return value, value.__array_interface__["data"][0]

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        if not isinstance(grid, tuple) or not isinstance(block, tuple):
            raise TypeError("grid and block must be tuples (CuPy's Function takes tuples)")
        grid3 = tuple(max(1, int(v)) for v in (grid + (1, 1))[:3])     # CuPy turns 0 into 1
        block3 = tuple(max(1, int(v)) for v in (block + (1, 1))[:3])
        args = tuple(args)
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, {len(args)} given")
        packed = [self._pack(i, a, p) for i, (a, p) in enumerate(zip(args, self.params))]
        pointers = (ctypes.c_void_p * max(1, len(packed)))(*[addr for _, addr in packed])
        error = ctypes.create_string_buffer(2048)
        la = _LaunchArgs(grid3, block3, int(shared_mem), pointers, len(packed), ctypes.cast(error, ctypes.c_char_p),
                         len(error), None, 0)
        with _launch_lock:
            rc = self._launch(ctypes.byref(la))
        for listener in listeners:
            listener(Launch(self.name, grid3, block3, int(shared_mem)))
        if rc:
            message = error.value.decode(errors="replace")
            if la.fault_signal in (signal.SIGSEGV, signal.SIGBUS):
                message += device_memory.describe_address(la.fault_addr, args)
            raise EmulatedLaunchError(f"{self.name} <<<{grid3}, {block3}>>>: {message}")


class RawModule:
    """CuPy's RawModule for the emulator: compiles ``code`` with its name expressions."""

    def __init__(self, code: str, options=(), name_expressions=(), **_ignored):
        self.names = tuple(name_expressions)
        self._lib = build.build(code, self.names, options)
        self._functions: dict[str, Function] = {}

    def get_function(self, name: str) -> Function:
        fn = self._functions.get(name)
        if fn is None:
            if name not in self.names:
                raise KeyError(f"{name!r} is not among the name expressions of this module")
            fn = self._functions[name] = Function(self._lib, self.names.index(name), name)
        return fn
