"""Device memory of the emulator: NumPy arrays in guarded host allocations.

``ndarray`` is a NumPy subclass that stands for ``cupy.ndarray``.  Arrays made by
:func:`empty` (and everything built on it) live in their own anonymous mapping: the data
starts 256-byte aligned (as CuPy's allocator guarantees), the bytes after its end up to
the page boundary are poison (0xff), and the page after that is mapped PROT_NONE, so a
kernel reading or writing past the end of a buffer faults and the launch fails, naming the
argument.  New buffers are filled with 0xff (NaN for floats, -1 for integers), so a kernel
that leaves an output element unwritten is seen.
"""
from __future__ import annotations

import ctypes
import mmap

import numpy as np

PAGE = mmap.PAGESIZE
ALIGN = 256
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_PROT_NONE = 0


class ndarray(np.ndarray):
    """A device array of the emulator (what ``isinstance(x, cupy.ndarray)`` tests).  Views
    keep ``_emu_alloc`` (end of the buffer's data, guard page address, a description)."""

    def __array_finalize__(self, obj):
        self._emu_alloc = getattr(obj, "_emu_alloc", None)

    def get(self, stream=None, order="C", out=None):
        """A host copy, as ``cupy.ndarray.get``."""
        return np.array(self.view(np.ndarray), order=order)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        dtype = np.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        return to_device(self.view(np.ndarray).astype(dtype, order="C", casting=casting))

    def copy(self, order="C"):
        return to_device(self.view(np.ndarray))


def _guarded_buffer(nbytes: int) -> tuple[mmap.mmap, int, int]:
    """(mapping, offset of the data, address of the guard page) for nbytes of data that end
    at most ALIGN - 1 bytes before a PROT_NONE page."""
    padded = -(-max(nbytes, 1) // ALIGN) * ALIGN
    data_pages = -(-padded // PAGE) * PAGE
    mm = mmap.mmap(-1, data_pages + PAGE)
    holder = ctypes.c_char.from_buffer(mm)
    base = ctypes.addressof(holder)
    del holder
    guard = base + data_pages
    if _libc.mprotect(guard, PAGE, _PROT_NONE) != 0:
        raise OSError(ctypes.get_errno(), "mprotect of the emulator's guard page failed")
    offset = data_pages - padded
    mm[:data_pages] = b"\xff" * data_pages
    return mm, offset, guard


def empty(shape, dtype=np.float32) -> ndarray:
    """An uninitialized (0xff-filled) C-contiguous device array in a guarded buffer."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    count = int(np.prod(shape, dtype=np.int64))
    mm, offset, guard = _guarded_buffer(count * dtype.itemsize)
    flat = np.frombuffer(mm, dtype=np.uint8, count=count * dtype.itemsize, offset=offset)
    arr = flat.view(dtype).reshape(shape).view(ndarray)
    end = flat.__array_interface__["data"][0] + flat.nbytes
    arr._emu_alloc = (end, guard, f"{dtype}, {count} elements")
    return arr


def to_device(host) -> ndarray:
    """A C-contiguous device copy of a host array (or of any array-like)."""
    host = np.asarray(host)
    out = empty(host.shape, host.dtype)
    out.view(np.ndarray)[...] = host
    return out


def describe_address(addr: int, args) -> str:
    """Where a faulting address lies relative to the device arrays among ``args``."""
    for i, a in enumerate(args):
        alloc = getattr(a, "_emu_alloc", None) if isinstance(a, ndarray) else None
        if alloc is not None and alloc[1] <= addr < alloc[1] + PAGE:
            return (f"; the address is {addr - alloc[0]} bytes past the end of the buffer of "
                    f"argument {i} ({alloc[2]})")
    return "; the address is not in the guard page of any argument's buffer"
