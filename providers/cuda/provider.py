"""CUDAExecutionProvider: kernels on CuPy arrays, one CUDA stream per session.

What can be checked on the CPU (options, availability, which nodes it takes) works
without CuPy.  Everything that touches a device (``xp``, ``stream``, ``run_context``,
``from_host``/``to_host``) needs CuPy and a GPU and has never run: it was written
without a device and will first run on the lent GPU machine.
"""
from __future__ import annotations

import contextlib
import functools
import threading

import ml_dtypes
import numpy as np
from onnx import TensorProto

from ortgpu.providers.base import ExecutionProvider
from ortgpu.providers.cuda.device_tables import DeviceTables
from ortgpu.providers.cuda.error_flags import ErrorFlags
from ortgpu.providers.cuda.options import default_option_strings, parse_cuda_options
from ortgpu.providers.registry import SHARED, KernelDef

CUDA = "cuda"

# Element types a CuPy array can hold (ONNX TensorProto codes).  Strings, the
# float8/float6/float4 types and the sub-byte integers have no CuPy dtype: nodes that read
# or write them stay on the CPU.  bfloat16 is held as ml_dtypes.bfloat16 (CuPy 14), but
# only kernels that declare it take it (see BF16_SHARED_OPS).
CUPY_ELEM_TYPES = frozenset({
    TensorProto.BOOL, TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
    TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64,
    TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BFLOAT16,
    TensorProto.COMPLEX64, TensorProto.COMPLEX128,
})

# Shared kernels that may run on bfloat16 CuPy arrays: they only view, reshape or copy their
# data, which CuPy 14 does for bfloat16.  Other shared kernels may call what CuPy lacks for it
# (ufunc.at, sorting, cupyx.scipy.special): a bfloat16 node reaches the GPU only through a
# CUDA registration that declares bfloat16, or one of these.
BF16_SHARED_OPS = frozenset({
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Expand", "Tile",
    "DepthToSpace", "SpaceToDepth",
})


def _declined_dtype_names() -> frozenset:
    """NumPy names (ml_dtypes included) of the ONNX element types CuPy cannot hold."""
    from ortgpu.dtypes import np_dtype  # noqa: PLC0415
    names = set()
    for code in TensorProto.DataType.values():
        if code and code not in CUPY_ELEM_TYPES:
            try:
                names.add(np_dtype(code).name)
            except TypeError:  # a type this onnx/ml_dtypes build has no dtype for
                pass
    return frozenset(names)


CUPY_DTYPES = frozenset(np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
    np.float16, np.float32, np.float64, np.complex64, np.complex128, ml_dtypes.bfloat16))

# Domains whose shared kernels stay on the CPU (domain -> reason); single ops say it in their
# registration (``@kernel(..., host_only="why")``).  A CUDA registration always wins over both.
HOST_DOMAINS = {
    "ai.onnx.ml": "onnxruntime's CUDA EP runs no ai.onnx.ml op; the tabular ML kernels are host code",
}

# Attributes that name an output element type (Cast's `to`, RandomNormal's `dtype`, ...)
_TYPE_ATTRS = ("to", "dtype", "output_dtype")
# Attributes whose tensor value becomes an output (Constant, ConstantOfShape)
_VALUE_ATTRS = ("value",)


def cuda_device_count() -> int | None:
    """Number of CUDA devices, 0 when CuPy sees none, None when CuPy does not import."""
    try:
        import cupy  # noqa: PLC0415
    except Exception:  # ImportError, or a CuPy build that fails to load its CUDA libraries
        return None
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when CuPy imports and sees at least one device; never raises; cached."""
    try:
        return (cuda_device_count() or 0) > 0
    except Exception:
        return False


def _held_type(tp):
    """The type a sequence or optional TypeProto holds, however nested (`tp` for any other)."""
    which = None if tp is None else tp.WhichOneof("value")
    while which in ("sequence_type", "optional_type"):
        tp = getattr(tp, which).elem_type
        which = tp.WhichOneof("value")
    return tp


def type_on_device(tp) -> bool:
    """Can a value of this onnx TypeProto live in CuPy arrays?  Unknown types are allowed."""
    tp = _held_type(tp)
    which = None if tp is None else tp.WhichOneof("value")
    if which == "tensor_type":
        code = tp.tensor_type.elem_type
        return code == 0 or code in CUPY_ELEM_TYPES
    return which not in ("map_type", "sparse_tensor_type")


def _has_bfloat16(tp) -> bool:
    """Whether an onnx TypeProto is (or holds) a bfloat16 tensor."""
    tp = _held_type(tp)
    return (tp is not None and tp.WhichOneof("value") == "tensor_type"
            and tp.tensor_type.elem_type == TensorProto.BFLOAT16)


def takes_bfloat16(kernel: KernelDef) -> bool:
    """Whether `kernel` may run a bfloat16 node on CuPy: a CUDA registration (its declared
    types decide), or a shared kernel of BF16_SHARED_OPS."""
    return kernel.provider != SHARED or kernel.op_type in BF16_SHARED_OPS


def host_only_reason(kernel: KernelDef) -> str | None:
    """Why a shared kernel must stay on the CPU (its ``host_only`` declaration, or its
    domain's entry in HOST_DOMAINS), or None."""
    if kernel.provider != SHARED:
        return None
    return kernel.host_only or HOST_DOMAINS.get(kernel.domain or "") or None


_MEMORY_CREATION = threading.Lock()   # two threads' first runs make one DeviceMemory


class CUDAExecutionProvider(ExecutionProvider):
    """Runs nodes on an NVIDIA GPU through CuPy (provider="cuda" kernels, then shared ones)."""

    name = "CUDAExecutionProvider"
    device = CUDA
    kernel_sources = (CUDA, SHARED)
    option_defaults = default_option_strings()
    declined_dtypes = _declined_dtype_names()

    def __init__(self, options: dict | None = None, *, device_count: int | None = -1):
        """``device_count`` is for tests: -1 asks CuPy; None skips the device_id range check."""
        if device_count == -1:
            device_count = cuda_device_count()
        self.config = parse_cuda_options(options, device_count)
        self.options = self.config.as_strings()
        self._stream = None
        self._memory = None
        self.error_flags = ErrorFlags()      # device error flags of the runs, read once per run
        self.device_tables = DeviceTables()  # host tables uploaded once (Resize), capture-safe
        self._depth = threading.local()      # run_context nesting per thread (flags: outermost only)

    def parse_options(self, options: dict) -> dict:
        return parse_cuda_options(options).as_strings()

    @property
    def device_id(self) -> int:
        return self.config.device_id

    # --- capability ---------------------------------------------------------------------
    def holds(self, tp) -> bool:
        """Whether a value of onnx TypeProto `tp` can live in CuPy arrays (maps and sparse
        tensors cannot; sequences and optionals by their elements; unknown types can)."""
        return type_on_device(tp)

    def accepts(self, node, kernel: KernelDef, input_types, output_types=None) -> bool:
        """Declines a node whose values CuPy cannot hold (float8, int4, strings, maps, ...),
        whose attributes ask for such an output type, whose only kernel is a shared one
        declared host only (host_only_reason), or that has bfloat16 values and a shared kernel
        outside BF16_SHARED_OPS (takes_bfloat16).  ``output_types`` (onnx TypeProtos) is optional."""
        if not super().accepts(node, kernel, input_types, output_types):
            return False
        if host_only_reason(kernel) is not None:
            return False
        for tp in list(input_types) + list(output_types or ()):
            if not type_on_device(tp):
                return False
            if _has_bfloat16(tp) and not takes_bfloat16(kernel):
                return False
        attrs = getattr(node, "attrs", None) or {}
        for name in _TYPE_ATTRS:
            code = attrs.get(name)
            if isinstance(code, (int, np.integer)) and not isinstance(code, bool) and code \
                    and (int(code) not in CUPY_ELEM_TYPES
                         or (int(code) == TensorProto.BFLOAT16 and not takes_bfloat16(kernel))):
                return False
        for name in _VALUE_ATTRS:
            v = attrs.get(name)
            if isinstance(v, np.ndarray) and (v.dtype not in CUPY_DTYPES
                                              or (v.dtype.name == "bfloat16" and not takes_bfloat16(kernel))):
                return False
        return True

    def prefers_nhwc(self, node, dtype) -> bool:
        """float16 convolutions go channels-last when the ``prefer_nhwc`` option is set and
        cuDNN's frontend is installed (cuDNN's tensor-core engines work in NHWC; NCHW data
        is transposed inside them)."""
        from ortgpu.providers.cuda.cudnn import frontend_installed  # noqa: PLC0415
        return bool(self.config.prefer_nhwc) and dtype == "float16" and frontend_installed()

    # --- device, stream, run scope (GPU only; never run) ---------------------------------
    @property
    def xp(self):
        import cupy  # noqa: PLC0415
        return cupy

    def _device(self):
        import cupy  # noqa: PLC0415
        return cupy.cuda.Device(self.config.device_id)

    @property
    def stream(self):
        """The session's CUDA stream: the caller's ``user_compute_stream`` wrapped, or a
        non-blocking stream of our own, created on first use on the selected device."""
        if self._stream is None:
            import cupy  # noqa: PLC0415
            with self._device():
                if self.config.user_compute_stream:
                    self._stream = cupy.cuda.ExternalStream(self.config.user_compute_stream,
                                                            self.config.device_id)
                else:
                    self._stream = cupy.cuda.Stream(non_blocking=True)
        return self._stream

    @property
    def memory(self):
        """This provider's device memory (ortgpu.memory.DeviceMemory): the arena that serves
        every CuPy allocation of its runs (gpu_mem_limit, arena_extend_strategy), the memory
        patterns and the pinned staging pool; made on first use (no device needed for that)."""
        if self._memory is None:
            from ortgpu.memory.device_memory import DeviceMemory  # noqa: PLC0415
            with _MEMORY_CREATION:
                if self._memory is None:
                    self._memory = DeviceMemory.for_cuda(self.config)
        return self._memory

    def memory_stats(self) -> dict:
        """The arena's counters with the "mem_pattern" and "staging" ones (DeviceMemory.stats)."""
        return self.memory.stats()

    @contextlib.contextmanager
    def run_context(self, pattern_key=None):
        """Enter around a run (and around host copies): selects the device, makes the session
        stream current (CuPy kernels, cuBLAS and cuDNN calls then queue on it), applies
        use_tf32 to CuPy's float32 matmul, tells the kernels which provider runs them, and
        routes this thread's CuPy allocations to the session's arena (``using_allocator`` is
        thread-local and scoped: CuPy's global allocator is untouched), taken for the session
        stream (a block another stream freed is reused after that stream's work on it).  ``pattern_key`` (an
        input signature, ortgpu.memory.pattern_key) lets the run record or replay a memory
        pattern.  When the run raises, its device buffers go back to the arena at once
        (DeviceMemory.run clears the locals of its finished frames)."""
        import cupy  # noqa: PLC0415
        from ortgpu.memory.cupy_allocator import CupyAllocator  # noqa: PLC0415
        outermost = getattr(self._depth, "n", 0) == 0
        self._depth.n = getattr(self._depth, "n", 0) + 1
        try:
            with self._device(), self.stream, _tf32_scope(self.config.use_tf32), \
                    self.memory.run(pattern_key, self.stream) as source, \
                    cupy.cuda.using_allocator(CupyAllocator(source, self.config.device_id)):
                try:
                    yield self
                except BaseException:
                    if outermost:
                        self.error_flags.discard()
                    raise
                if outermost:
                    self.error_flags.check_pending(cupy)  # one read of every flag of the run
        finally:
            self._depth.n -= 1

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def wait_for_caller(self) -> None:
        """Order the session stream after the work the caller queued on CuPy's current stream
        (an event, no host wait), so that inputs a caller just filled are complete before a
        run reads them.  Work on other streams (torch's) needs synchronize_inputs()."""
        import cupy  # noqa: PLC0415
        with self._device():
            caller = cupy.cuda.get_current_stream()
            if caller.ptr != self.stream.ptr:
                self.stream.wait_event(caller.record())

    # --- CUDA graphs (ortgpu.providers.cuda.graphs; never run) ---------------------------
    @property
    def graph_capture_enabled(self) -> bool:
        """``enable_cuda_graph``: the session captures its runs into CUDA graphs."""
        return self.config.enable_cuda_graph

    def graph_backend(self):
        from ortgpu.providers.cuda.graphs import CupyGraphBackend  # noqa: PLC0415
        return CupyGraphBackend(self)

    # --- host copies (GPU only; never run) ------------------------------------------------
    def from_host(self, value):
        """A host value (NumPy array or scalar, list = sequence, None = empty optional) on
        this provider's device, copied on the session stream."""
        if value is None:
            return None
        if isinstance(value, list):
            return [self.from_host(v) for v in value]
        if isinstance(value, dict):
            raise TypeError("map values cannot live on the CUDA device")
        import cupy  # noqa: PLC0415
        if isinstance(value, cupy.ndarray):
            if value.device.id == self.config.device_id:
                return value
            with self._device(), self.stream:
                return cupy.array(value, copy=True)  # peer copy to our device
        arr = np.asarray(value)
        if arr.dtype not in CUPY_DTYPES:
            raise TypeError(f"CuPy cannot hold element type {arr.dtype}; such values stay on the CPU")
        from ortgpu.memory.staging import upload  # noqa: PLC0415
        with self._device(), self.stream:
            return upload(self.memory.staging, arr, self.stream)

    def to_host(self, value):
        """A device value as NumPy (lists and None as they are), complete when returned: copied
        on the session stream into a pinned buffer of the staging pool that the result views
        (the buffer is reused once the result is collected)."""
        if value is None:
            return None
        if isinstance(value, list):
            return [self.to_host(v) for v in value]
        try:
            import cupy  # noqa: PLC0415
        except ImportError:
            return value
        if isinstance(value, cupy.ndarray):
            from ortgpu.memory.staging import download  # noqa: PLC0415
            with self._device():
                return download(self.memory.staging, value, self.stream)
        return value


# --- TF32 for CuPy's own matmul (GPU only; never run) -----------------------------------
_COMPUTE_TYPE_DEFAULT, _COMPUTE_TYPE_TF32 = 1, 7  # cupy._core._routines_linalg constants


class _Tf32Setting:
    """The process-wide compute type of cupy.matmul on float32, shared by concurrent runs.

    Runs that want the same setting share it (counted); a run that wants the other one waits
    until the runs holding the current one end, then sets it; the last run out puts back
    what was there before.  A run nested in another on the same thread keeps the outer
    setting (waiting there would deadlock).  So two sessions with different ``use_tf32``
    never see each other's setting, at the price of not overlapping on the host."""

    def __init__(self):
        self.cond = threading.Condition()
        self.value = None
        self.previous = None
        self.holders = 0
        self.local = threading.local()

    @contextlib.contextmanager
    def scope(self, linalg, want):
        depth = getattr(self.local, "depth", 0)
        with self.cond:
            if depth == 0:
                while self.holders and self.value != want:
                    self.cond.wait()
            if self.holders == 0:
                self.previous = linalg.get_compute_type(np.float32)
                if self.previous != want:
                    linalg.set_compute_type(np.float32, want)
                self.value = want
            self.holders += 1
        self.local.depth = depth + 1
        try:
            yield
        finally:
            self.local.depth = depth
            with self.cond:
                self.holders -= 1
                if self.holders == 0:
                    if self.previous != self.value:
                        linalg.set_compute_type(np.float32, self.previous)
                    self.value = None
                    self.cond.notify_all()


_TF32 = _Tf32Setting()


@contextlib.contextmanager
def _tf32_scope(enabled: bool):
    """cupy.matmul on float32 honours a process-wide compute type (what CUPY_TF32 sets at
    first use); set it for the duration of a run and put the previous one back, safely across
    threads (_Tf32Setting).  TF32 needs compute capability 8.0 or newer; older devices keep
    the default."""
    try:
        from cupy._core import _routines_linalg as linalg  # noqa: PLC0415
        import cupy  # noqa: PLC0415
    except Exception:
        yield
        return
    tf32 = getattr(linalg, "COMPUTE_TYPE_TF32", _COMPUTE_TYPE_TF32)
    default = getattr(linalg, "COMPUTE_TYPE_DEFAULT", _COMPUTE_TYPE_DEFAULT)
    want = tf32 if enabled and int(cupy.cuda.Device().compute_capability) >= 80 else default
    with _TF32.scope(linalg, want):
        yield
