"""SparseTensor: onnxruntime's sparse tensors (COO, CSR, block-sparse) on the CPU or CUDA.

A SparseTensor keeps its buffers (values and indices) as arrays of one device kind; numeric
buffers made from NumPy arrays on the CPU share their memory, as onnxruntime's do.  An
OrtValue can hold one (``OrtValue.ort_value_from_sparse_tensor``), which is how sparse
tensors travel in onnxruntime's API; ortgpu's sessions run dense tensors only, so a sparse
OrtValue fed to a session is refused there with the input's name.
"""
from __future__ import annotations

import numpy as np

from ortgpu.device_info import OrtDevice, device_kind_name
from ortgpu.devices import device_kind, kind_of
from ortgpu.dtypes import onnx_code, tensor_type_str
from ortgpu.enums import OrtEnum


class OrtSparseFormat(OrtEnum):
    ORT_SPARSE_UNDEFINED = 0
    ORT_SPARSE_COO = 1
    ORT_SPARSE_CSRC = 2
    ORT_SPARSE_BLOCK_SPARSE = 4


class _View:
    def __init__(self, tensor: "SparseTensor", *arrays):
        self._tensor = tensor  # keeps the buffers alive
        self._arrays = arrays


class SparseCooView(_View):
    """COO indices of a sparse tensor: linear (nnz,) or coordinate pairs (nnz, 2)."""

    def indices(self) -> np.ndarray:
        return _host(self._arrays[0])


class SparseCsrView(_View):
    """CSR(C) indices: ``inner`` (column of each value) and ``outer`` (row starts, rows + 1)."""

    def inner(self) -> np.ndarray:
        return _host(self._arrays[0])

    def outer(self) -> np.ndarray:
        return _host(self._arrays[1])


class SparseBlockSparseView(_View):
    """Block-sparse indices (int32)."""

    def indices(self) -> np.ndarray:
        return _host(self._arrays[0])


def _host(array) -> np.ndarray:
    """A read-only view of a buffer on the host (a host copy for device buffers), as
    onnxruntime hands out views over its native buffers."""
    view = (array if isinstance(array, np.ndarray) else kind_of(array).to_numpy(array)).view()
    view.flags.writeable = False
    return view


def _dense_shape(dense_shape) -> np.ndarray:
    shape = np.asarray(dense_shape)
    if shape.ndim != 1 or shape.dtype.kind not in "iu" and shape.size:
        raise RuntimeError(f"dense_shape must be a 1-D list or array of ints, got {dense_shape!r}")
    if (shape < 0).any():
        raise RuntimeError(f"dense_shape has a negative dimension: {list(shape)}")
    return shape.astype(np.int64)


def _values(values) -> np.ndarray:
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        raise RuntimeError("values must be a 1-D numpy array")
    if values.dtype.kind == "O":
        raise RuntimeError("Unsupported values data type: object arrays; use a numpy str array for strings")
    if values.dtype.kind != "U":
        try:
            onnx_code(values.dtype)
        except TypeError:
            raise RuntimeError(f"Unsupported values data type: {values.dtype}") from None
    return values


def _index(name: str, array, dtype=np.int64) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype != dtype:
        raise RuntimeError(f"{name} must be a numpy {np.dtype(dtype).name} array")
    return np.ascontiguousarray(array)


class SparseTensor:
    """A sparse tensor: a format, a dense shape, values and the format's index buffers."""

    def __init__(self, sparse_tensor: "SparseTensor"):
        """Wrap another SparseTensor (onnxruntime's internal constructor); build new ones with
        the factory methods."""
        if not isinstance(sparse_tensor, SparseTensor):
            raise ValueError("`Provided object` needs to be a SparseTensor; use sparse_coo_from_numpy, "
                             "sparse_csr_from_numpy or blocksparse_from_numpy")
        self.__dict__.update(sparse_tensor.__dict__)

    @classmethod
    def _make(cls, fmt, dense_shape, values, indices, device) -> "SparseTensor":
        obj = cls.__new__(cls)
        obj._format, obj._dense_shape, obj._values, obj._indices = fmt, dense_shape, values, indices
        obj._device = device  # ortgpu device kind name
        return obj

    @staticmethod
    def _device_of(ort_device) -> str:
        if not isinstance(ort_device, OrtDevice):
            raise TypeError(f"ort_device must be an OrtDevice, not {type(ort_device).__name__}")
        kind = device_kind_name(ort_device)
        if kind != "cpu":
            raise RuntimeError(f"the numpy buffers are in CPU memory but ort_device says {kind}; build the "
                               f"sparse tensor on the CPU and move it with to_cuda()")
        return kind

    @classmethod
    def sparse_coo_from_numpy(cls, dense_shape, values, coo_indices, ort_device) -> "SparseTensor":
        """COO: `coo_indices` int64, linear (nnz,) or coordinates (nnz, 2) for 2-D shapes."""
        shape, vals = _dense_shape(dense_shape), _values(values)
        idx = _index("coo_indices", coo_indices)
        if idx.size not in (vals.size, 2 * vals.size) or (idx.ndim == 2 and idx.shape[1] != 2):
            raise RuntimeError(f"Index size: {idx.size} must be equal to or twice the values size: {vals.size} "
                               f"(COO indices are linear (nnz,) or coordinate pairs (nnz, 2))")
        return cls._make(OrtSparseFormat.ORT_SPARSE_COO, shape, vals, (idx,), cls._device_of(ort_device))

    @classmethod
    def sparse_csr_from_numpy(cls, dense_shape, values, inner_indices, outer_indices, ort_device) -> "SparseTensor":
        """CSR: `inner_indices` (nnz,) int64 columns, `outer_indices` (rows + 1,) int64 row starts."""
        shape, vals = _dense_shape(dense_shape), _values(values)
        if shape.size != 2:
            raise RuntimeError(f"CSR format supports 2-D tensors only, the dense shape is {list(shape)}")
        inner, outer = _index("inner_indices", inner_indices), _index("outer_indices", outer_indices)
        if inner.size != vals.size:
            raise RuntimeError(f"inner_indices has {inner.size} entries but there are {vals.size} values")
        if outer.size != shape[0] + 1:
            raise RuntimeError(f"outer_indices has {outer.size} entries; a {shape[0]}-row tensor needs {shape[0] + 1}")
        return cls._make(OrtSparseFormat.ORT_SPARSE_CSRC, shape, vals, (inner, outer), cls._device_of(ort_device))

    @classmethod
    def blocksparse_from_numpy(cls, dense_shape, values, indices, ort_device) -> "SparseTensor":
        """Block-sparse: `values` (blocks) and int32 `indices`, as onnxruntime's C-level factory."""
        shape = _dense_shape(dense_shape)
        if not isinstance(values, np.ndarray):
            raise RuntimeError("values must be a numpy array")
        idx = _index("indices", indices, np.int32)
        return cls._make(OrtSparseFormat.ORT_SPARSE_BLOCK_SPARSE, shape, values, (idx,), cls._device_of(ort_device))

    def _get_c_tensor(self) -> "SparseTensor":
        return self

    # --- queries -------------------------------------------------------------------------------
    def values(self) -> np.ndarray:
        """The non-zero values (the same memory on the CPU, a host copy from CUDA)."""
        return _host(self._values)

    def _view(self, fmt, view_cls, what):
        if self._format != fmt:
            raise RuntimeError(f"This sparse tensor does not contain {what} format (it is {self._format})")
        return view_cls(self, *self._indices)

    def as_coo_view(self) -> SparseCooView:
        return self._view(OrtSparseFormat.ORT_SPARSE_COO, SparseCooView, "COO")

    def as_csrc_view(self) -> SparseCsrView:
        return self._view(OrtSparseFormat.ORT_SPARSE_CSRC, SparseCsrView, "CSR(C)")

    def as_blocksparse_view(self) -> SparseBlockSparseView:
        return self._view(OrtSparseFormat.ORT_SPARSE_BLOCK_SPARSE, SparseBlockSparseView, "BlockSparse")

    get_coo_data = as_coo_view
    get_csrc_data = as_csrc_view
    get_blocksparse_data = as_blocksparse_view

    def format(self) -> OrtSparseFormat:
        """The format (onnxruntime's Python wrapper calls it as a method, as here)."""
        return self._format

    def dense_shape(self) -> list[int]:
        """The dense shape, as a list of ints (onnxruntime returns a list too)."""
        return [int(d) for d in self._dense_shape]

    def data_type(self) -> str:
        code = 8 if self._values.dtype.kind == "U" else onnx_code(self._values.dtype)
        return f"sparse_tensor({tensor_type_str(code)[len('tensor('):-1]})"

    def device_name(self) -> str:
        return self._device

    def to_cuda(self, ort_device) -> "SparseTensor":
        """A copy on the CUDA device `ort_device` names; strings and tensors already on a GPU
        are refused, as in onnxruntime."""
        if not isinstance(ort_device, OrtDevice) or device_kind_name(ort_device) != "cuda":
            raise RuntimeError("to_cuda() needs an OrtDevice of a CUDA device (OrtDevice.make('cuda', id))")
        if self._device != "cpu":
            raise RuntimeError("Cross device copy is not supported: this sparse tensor is already on a GPU")
        if self._values.dtype.kind == "U":
            raise RuntimeError("Can not copy string tensor to GPU devices.")
        kind = device_kind("cuda")
        dev = ort_device.device_id()
        return SparseTensor._make(self._format, self._dense_shape, kind.from_numpy(self._values, dev),
                                  tuple(kind.from_numpy(i, dev) for i in self._indices), "cuda")

    def to_dense(self) -> np.ndarray:
        """The dense NumPy array (an ortgpu convenience, used by tests and tools)."""
        shape = tuple(self.dense_shape())
        out = np.zeros(shape, dtype=self._values.dtype)
        vals = self.values()
        if self._format == OrtSparseFormat.ORT_SPARSE_COO:
            idx = _host(self._indices[0])
            flat = idx if idx.ndim == 1 and idx.size == vals.size else np.ravel_multi_index(
                tuple(idx.reshape(-1, 2).T), shape)
            out.reshape(-1)[flat] = vals
        elif self._format == OrtSparseFormat.ORT_SPARSE_CSRC:
            inner, outer = (_host(a) for a in self._indices)
            rows = np.repeat(np.arange(shape[0]), np.diff(outer))
            out[rows, inner] = vals
        else:
            raise RuntimeError("to_dense() does not support the block-sparse format")
        return out

    # an OrtValue recognizes a sparse tensor by this flag (values.py cannot import this module)
    _is_sparse_tensor = True


__all__ = ["SparseTensor", "OrtSparseFormat", "SparseCooView", "SparseCsrView", "SparseBlockSparseView"]
