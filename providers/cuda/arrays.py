"""The "cuda" device kind (ortgpu.devices): CuPy arrays for OrtValue and IOBinding.

NEVER RUN ON A GPU: written without a device.  Importing this module needs no CuPy; every
method imports it when called.  Copies run on CuPy's current stream and are complete when a
method returns, as onnxruntime's ``ortvalue_from_numpy(..., 'cuda')`` and ``update_inplace``
are synchronous.  Torch CUDA tensors enter through DLPack (``OrtValue.from_dlpack``) or a raw
pointer (``IOBinding.bind_input(..., buffer_ptr=t.data_ptr())``), both without a copy.
"""
from __future__ import annotations

import numpy as np

from ortgpu.devices import DLPACK_CUDA, DeviceKind, register_device_kind


def _cupy():
    try:
        import cupy  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError(f"'cuda' OrtValues need CuPy, which does not import here ({e}); install "
                           f"ortgpu[cuda13] or ortgpu[cuda12] on a machine with an NVIDIA GPU") from e
    return cupy


class CuPyKind(DeviceKind):
    """CUDA device memory held by ``cupy.ndarray``."""

    name = "cuda"
    dlpack_code = DLPACK_CUDA

    def owns(self, array) -> bool:
        # decided without importing CuPy: a CPU-only process never pays for it
        return type(array).__module__.split(".")[0] == "cupy" and hasattr(array, "__cuda_array_interface__")

    def device_id(self, array) -> int:
        return int(array.device.id)

    def holds(self, dtype) -> bool:
        from ortgpu.providers.cuda.provider import CUPY_DTYPES  # noqa: PLC0415
        return np.dtype(dtype) in CUPY_DTYPES

    def empty(self, shape, dtype, device_id: int):
        cp = _cupy()
        with cp.cuda.Device(device_id):
            return cp.empty(shape, dtype)

    def from_numpy(self, array, device_id: int):
        cp = _cupy()
        with cp.cuda.Device(device_id):
            out = cp.asarray(np.ascontiguousarray(array))
            cp.cuda.get_current_stream().synchronize()
        return out

    def to_numpy(self, array) -> np.ndarray:
        cp = _cupy()
        with cp.cuda.Device(array.device.id):
            stream = cp.cuda.get_current_stream()
            host = array.get(stream=stream)
            stream.synchronize()
        return host

    def copy_into(self, dst, src, wait: bool = True) -> None:
        cp = _cupy()
        with cp.cuda.Device(dst.device.id):
            stream = cp.cuda.get_current_stream()
            if isinstance(src, np.ndarray):
                dst.set(np.ascontiguousarray(src).reshape(dst.shape), stream=stream)
            else:
                cp.copyto(dst, src.reshape(dst.shape), casting="no")  # device to device (or peer)
            if wait:
                stream.synchronize()

    def data_ptr(self, array) -> int:
        return int(array.data.ptr) if array.size else 0

    def from_pointer(self, ptr, shape, dtype, device_id):
        cp = _cupy()
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        mem = cp.cuda.UnownedMemory(int(ptr), nbytes, owner=None, device_id=device_id)
        return cp.ndarray(tuple(shape), dtype, cp.cuda.MemoryPointer(mem, 0))

    def from_dlpack(self, obj):
        return _cupy().from_dlpack(obj)

    def synchronize(self, device_id: int) -> None:
        cp = _cupy()
        cp.cuda.Device(device_id).synchronize()


register_device_kind(CuPyKind())
