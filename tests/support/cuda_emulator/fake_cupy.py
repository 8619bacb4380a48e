"""A NumPy-backed stand-in for the ``cupy`` module, just rich enough for the CUDA provider's
launchers and, when a launcher falls back, for the shared kernels.

It is a module named ``cupy`` whose ``ndarray`` is the emulator's device array
(``device_memory.ndarray``), whose ``RawModule`` compiles for the host emulator, and whose
``cuda.runtime`` reports one device with ``sm_count`` multiprocessors (few, so that the
grid-stride loops of element-wise kernels wrap around on small tensors).  Array creation
(``empty``, ``asarray``, ``ascontiguousarray``, ...) allocates guarded device buffers;
any other attribute is NumPy's, with array results viewed as device arrays.
"""
from __future__ import annotations

import functools
import types

import numpy as np
import scipy.special

from support.cuda_emulator import device_memory
from support.cuda_emulator.launch import RawModule

DEVICE_NAME = "ortgpu host emulator"


def _to_device_result(value):
    if isinstance(value, np.ndarray) and not isinstance(value, device_memory.ndarray):
        return value.view(device_memory.ndarray)
    if isinstance(value, tuple):
        return tuple(_to_device_result(v) for v in value)
    return value


def _numpy_attribute(name):
    attr = getattr(np, name)   # AttributeError for names NumPy lacks too
    if callable(attr) and not isinstance(attr, type):
        @functools.wraps(attr)
        def on_device(*args, **kwargs):
            return _to_device_result(attr(*args, **kwargs))
        return on_device
    return attr


class _Stream:
    ptr = 0

    def synchronize(self):
        pass


def make_cupy(sm_count: int = 1) -> types.ModuleType:
    """A fresh ``cupy`` stand-in reporting one device with ``sm_count`` multiprocessors."""
    cp = types.ModuleType("cupy")
    cp.__doc__ = __doc__
    cp.ndarray = device_memory.ndarray
    cp.RawModule = RawModule
    cp.scipy_special = scipy.special   # what providers/kernels/elementwise.py looks for

    def empty(shape, dtype=np.float32, order="C"):
        return device_memory.empty(shape, dtype)

    def asarray(a, dtype=None, order=None):
        if isinstance(a, device_memory.ndarray) and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        host = a.view(np.ndarray) if isinstance(a, np.ndarray) else a
        return device_memory.to_device(np.asarray(host, dtype=dtype))

    def array(a, dtype=None, copy=True, order="K"):
        host = a.view(np.ndarray) if isinstance(a, np.ndarray) else a
        return device_memory.to_device(np.array(host, dtype=dtype))

    def ascontiguousarray(a, dtype=None):
        if (isinstance(a, device_memory.ndarray) and a.flags.c_contiguous
                and (dtype is None or np.dtype(dtype) == a.dtype)):
            return a
        return array(a, dtype=dtype)

    def zeros(shape, dtype=np.float32, order="C"):
        out = empty(shape, dtype)
        out.view(np.ndarray)[...] = 0
        return out

    def asnumpy(a, stream=None, order="C", out=None):
        return np.array(a.view(np.ndarray) if isinstance(a, np.ndarray) else a, order=order)

    for fn in (empty, asarray, array, ascontiguousarray, zeros, asnumpy):
        setattr(cp, fn.__name__, fn)

    runtime = types.SimpleNamespace(
        getDevice=lambda: 0,
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda device: {
            "name": DEVICE_NAME.encode(), "multiProcessorCount": sm_count, "major": 9, "minor": 0,
            "maxThreadsPerBlock": 1024, "warpSize": 32, "sharedMemPerBlock": 48 * 1024},
    )
    cp.cuda = types.SimpleNamespace(runtime=runtime, is_available=lambda: True,
                                    get_current_stream=lambda: _Stream())
    cp.__getattr__ = _numpy_attribute
    return cp
