"""Conv through cuDNN's graph API (``nvidia-cudnn-frontend``, import name ``cudnn``).

Registered always; without the frontend (the ``cudnn`` extra) or its library the shared
im2col + GEMM Conv runs on CuPy (the reason logged once).  The frontend is imported on first use, not at
import time, so a CPU-only machine with the package installed pays nothing.

Per (device, shapes, dtype, attributes, options) one graph is built, validated and
planned once and cached; every run then only executes the plan with the arrays of the
call on the current (session) stream.  Whatever cuDNN refuses (a dtype, negative pads,
a grouping it has no engine for) is remembered as unsupported for that key and runs the
shared kernel instead, so a refusal costs one failed build, never a wrong answer.

Option mapping (onnxruntime's meanings): ``use_tf32=0`` drops TF32 tensor-core engines for
float32; ``cudnn_conv_use_max_workspace=0`` limits the workspace to 32 MiB;
``cudnn_conv_algo_search`` DEFAULT uses the fallback heuristic, HEURISTIC and EXHAUSTIVE
the main one (exhaustive autotuning is not implemented yet: it behaves as HEURISTIC);
``cudnn_conv1d_pad_to_nc1d`` puts a 1-D convolution's length on W instead of H.

``ortgpu::NhwcConv`` (made by the layout pass) runs on the same plans with channels-last
strides for X, W and Y (``layout_strides``).

THIS FILE HAS NEVER RUN: it was written from the frontend's classic Python API
(pygraph / tensor / conv_fprop / build_operation_graph / create_execution_plans /
check_support / build_plans / execute) without a GPU; ``conv_geometry`` is the only part
tested (on the CPU).
"""
from __future__ import annotations

import importlib.util
import logging
import threading

import numpy as np

from ortgpu.providers.cuda.options import config_of
from ortgpu.providers.kernels.conv import conv_float, conv_out_shape, fill_spatial, resolve_pads
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.registry import kernel

_log = logging.getLogger("ortgpu")
WORKSPACE_LIMIT = 32 << 20  # onnxruntime's limit when cudnn_conv_use_max_workspace is off
CUDNN_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32))


def frontend_installed() -> bool:
    return importlib.util.find_spec("cudnn") is not None


def conv_geometry(x_shape, w_shape, auto_pad, dilations, kernel_shape, pads, strides, pad_to_nc1d=False):
    """The convolution as cuDNN takes it, or None when it cannot.

    Returns a dict: x/w shapes given to cuDNN (1-D lifted to 2-D), begin/end pads, strides,
    dilations (all per cuDNN spatial axis) and the ONNX output shape."""
    nd = len(x_shape) - 2
    if nd < 1 or nd > 3:
        return None
    kernel = fill_spatial(kernel_shape, nd, 0) if kernel_shape else list(w_shape[2:])
    if list(kernel) != list(w_shape[2:]):
        return None
    st = fill_spatial(strides, nd, 1)
    dil = fill_spatial(dilations, nd, 1)
    begins, ends = resolve_pads(list(x_shape[2:]), kernel, st, dil, auto_pad, pads)
    if any(p < 0 for p in begins + ends):
        return None  # cropping pads: the shared kernel handles them
    out_spatial = conv_out_shape(list(x_shape[2:]), kernel, st, dil, begins, ends)
    if any(o <= 0 for o in out_spatial):
        return None
    x_shape, w_shape = list(x_shape), list(w_shape)
    if nd == 1:  # cuDNN needs two spatial axes: add a unit one
        if pad_to_nc1d:
            x_shape.insert(2, 1)
            w_shape.insert(2, 1)
            begins, ends, st, dil = [0] + begins, [0] + ends, [1] + st, [1] + dil
        else:
            x_shape.append(1)
            w_shape.append(1)
            begins, ends, st, dil = begins + [0], ends + [0], st + [1], dil + [1]
    return {"x": x_shape, "w": w_shape, "pre": begins, "post": ends, "stride": st, "dilation": dil,
            "y": [x_shape[0], w_shape[0]] + out_spatial}


def _c_strides(shape):
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return list(reversed(out))


def layout_strides(dims, channels_last: bool):
    """Element strides of a tensor cuDNN sees with ``dims`` in N, C, spatial... order: packed
    NCHW, or packed NHWC (channels innermost) when ``channels_last``."""
    if not channels_last:
        return _c_strides(dims)
    n, c, *spatial = dims
    stored = _c_strides([n] + spatial + [c])   # strides of the N, spatial..., C memory order
    return [stored[0], stored[-1]] + stored[1:-1]


# ----------------------------------------------------------------------------- plans (GPU only)

_UNSUPPORTED = object()
_PLANS: dict = {}
_HANDLES = threading.local()
_LOCK = threading.Lock()


_NOTED: set = set()


def note_fallback(what: str, exc: BaseException) -> None:
    """Log once per (what, error type) why a cuDNN path fell back to the slower shared one, so
    an API failure is not hidden as a silent slow path (and not repeated per launch)."""
    key = (what, type(exc).__name__)
    if key not in _NOTED:
        _NOTED.add(key)
        level = logging.INFO if isinstance(exc, ModuleNotFoundError) else logging.WARNING  # not installed: expected
        _log.log(level, "%s: cuDNN not used (%s: %s); the shared kernel runs instead", what,
                     type(exc).__name__, exc)


def cudnn_and_handle(xp, what: str):
    """(cudnn module, this thread's handle, device id), or None when cuDNN cannot be used here:
    the frontend missing, its library (libcudnn.so.9) not loadable, no CUDA array module, or
    the handle not created.  Every failure of that kind is a fallback, logged once."""
    try:
        import cudnn  # noqa: PLC0415
        device_id = xp.cuda.Device().id
        return cudnn, _handle(cudnn, device_id), device_id
    except Exception as e:  # noqa: BLE001 - any failure to reach cuDNN means the shared path
        note_fallback(what, e)
        return None


def _handle(cudnn, device_id: int):
    """One cuDNN handle per (thread, device): cuDNN handles must not be shared by threads."""
    handles = getattr(_HANDLES, "by_device", None)
    if handles is None:
        handles = _HANDLES.by_device = {}
    if device_id not in handles:
        handles[device_id] = cudnn.create_handle()
    return handles[device_id]


class _ConvPlan:
    """A built cuDNN graph for one convolution problem.  Never run."""

    def __init__(self, cudnn, handle, geom, dtype, tf32, max_workspace, algo_search, channels_last=False):
        io = cudnn.data_type.HALF if dtype == np.float16 else cudnn.data_type.FLOAT
        graph = cudnn.pygraph(io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT,
                              compute_data_type=cudnn.data_type.FLOAT, handle=handle)
        self.x = graph.tensor(name="X", dim=geom["x"], stride=layout_strides(geom["x"], channels_last),
                              data_type=io)
        self.w = graph.tensor(name="W", dim=geom["w"], stride=layout_strides(geom["w"], channels_last),
                              data_type=io)
        y_dims = [geom["x"][0], geom["w"][0]] + self._spatial_out(geom)
        self.y = graph.conv_fprop(image=self.x, weight=self.w, pre_padding=geom["pre"],
                                  post_padding=geom["post"], stride=geom["stride"],
                                  dilation=geom["dilation"], compute_data_type=cudnn.data_type.FLOAT,
                                  name="conv")
        self.y.set_output(True).set_data_type(io)
        self.y.set_dim(y_dims).set_stride(layout_strides(y_dims, channels_last))
        graph.validate()
        graph.build_operation_graph()
        modes = [cudnn.heur_mode.FALLBACK] if algo_search == "DEFAULT" else [cudnn.heur_mode.A,
                                                                               cudnn.heur_mode.FALLBACK]
        graph.create_execution_plans(modes)
        if dtype == np.float32 and not tf32 and hasattr(graph, "deselect_numeric_notes"):
            graph.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE])
        if not max_workspace and hasattr(graph, "deselect_workspace_greater_than"):
            graph.deselect_workspace_greater_than(WORKSPACE_LIMIT)
        graph.check_support()
        graph.build_plans()
        self.graph = graph
        self.handle = handle   # keeps the handle (and so its id in the cache key) alive
        self.workspace_size = int(graph.get_workspace_size())
        self.y_dims = y_dims

    @staticmethod
    def _spatial_out(geom):
        sp = geom["x"][2:]
        k = geom["w"][2:]
        return conv_out_shape(sp, k, geom["stride"], geom["dilation"], geom["pre"], geom["post"])

    def execute(self, cudnn, handle, xp, x, w, y):
        workspace = xp.empty(max(self.workspace_size, 1), dtype=xp.uint8)
        cudnn.set_stream(handle=handle, stream=xp.cuda.get_current_stream().ptr)
        self.graph.execute({self.x: x, self.w: w, self.y: y}, workspace, handle=handle)


def _plan_for(xp, X, W, geom, config, channels_last=False):
    """The cached plan for this problem, or None when cuDNN cannot take it."""
    got = cudnn_and_handle(xp, "Conv")
    if got is None:
        return None, None, None
    cudnn, handle, device_id = got
    # per handle (so per thread): a plan runs on the handle it was built with, kept alive by it
    key = (id(handle), device_id, tuple(geom["x"]), tuple(geom["w"]), tuple(geom["pre"]), tuple(geom["post"]),
           tuple(geom["stride"]), tuple(geom["dilation"]), np.dtype(X.dtype).str, config.use_tf32,
           config.cudnn_conv_use_max_workspace, config.cudnn_conv_algo_search, channels_last)
    plan = _PLANS.get(key)
    if plan is None:
        try:
            plan = _ConvPlan(cudnn, handle, geom, np.dtype(X.dtype), config.use_tf32,
                             config.cudnn_conv_use_max_workspace, config.cudnn_conv_algo_search,
                             channels_last)
        except Exception as e:  # noqa: BLE001 - no engine for it (or the API differs): shared kernel
            note_fallback("Conv plan", e)
            plan = _UNSUPPORTED
        with _LOCK:
            _PLANS[key] = plan
    if plan is _UNSUPPORTED:
        return None, None, None
    return plan, cudnn, handle


def conv_cudnn(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides):
    """Conv on cuDNN when it can, else the shared kernel.  Never run."""
    xp = ctx.xp
    config = config_of(ctx)
    geom = None
    if np.dtype(X.dtype) in CUDNN_DTYPES and X.dtype == W.dtype and X.ndim == W.ndim \
            and X.shape[1] == W.shape[1] * group and W.shape[0] % group == 0:
        geom = conv_geometry(X.shape, W.shape, auto_pad, dilations, kernel_shape, pads, strides,
                             config.cudnn_conv1d_pad_to_nc1d)
    plan = cudnn = handle = None
    if geom is not None and X.size and W.size:
        plan, cudnn, handle = _plan_for(xp, X, W, geom, config)
    if plan is None:
        return conv_float(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
    x = xp.ascontiguousarray(X).reshape(geom["x"])
    w = xp.ascontiguousarray(W).reshape(geom["w"])
    y = xp.empty(plan.y_dims, dtype=X.dtype)
    plan.execute(cudnn, handle, xp, x, w, y)
    y = y.reshape(geom["y"])
    if B is not None:
        y += B.astype(y.dtype, copy=False).reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def nhwc_conv_cudnn(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides):
    """ortgpu::NhwcConv (X NHWC, W OHWI, Y NHWC) on cuDNN reading the channels-last memory
    directly; the shared kernel (through NCHW views) where cuDNN cannot.  Never run."""
    from ortgpu.providers.kernels import nhwc  # noqa: PLC0415
    xp = ctx.xp
    config = config_of(ctx)
    plan = geom = None
    if np.dtype(X.dtype) in CUDNN_DTYPES and X.dtype == W.dtype and X.ndim == 4 == W.ndim \
            and X.shape[3] == W.shape[3] * group and W.shape[0] % group == 0 and X.size and W.size:
        nchw_x = (X.shape[0], X.shape[3], X.shape[1], X.shape[2])
        nchw_w = (W.shape[0], W.shape[3], W.shape[1], W.shape[2])
        geom = conv_geometry(nchw_x, nchw_w, auto_pad, dilations, kernel_shape, pads, strides)
        if geom is not None:
            plan, cudnn, handle = _plan_for(xp, X, W, geom, config, channels_last=True)
    if plan is None:
        return nhwc.NhwcConv(ctx, X, W, B, auto_pad=auto_pad, dilations=dilations, group=group,
                             kernel_shape=kernel_shape, pads=pads, strides=strides)
    n, k, p, q = plan.y_dims
    y = xp.empty((n, p, q, k), dtype=X.dtype)
    plan.execute(cudnn, handle, xp, xp.ascontiguousarray(X), xp.ascontiguousarray(W), y)
    if B is not None:
        y += B.astype(y.dtype, copy=False)
    return y


# Registered whether or not the frontend is installed: without it (or without libcudnn) the
# first call logs why and every call runs the shared kernel, so placement and the coverage
# table do not depend on what is installed.
REGISTER_ALWAYS = True
if REGISTER_ALWAYS:
    # types: what CuPy holds of the shared kernels' (float16/32/64), which they fall back to
    @kernel("Conv", since=(1, 11, 22), provider="cuda", types={"T": FLOAT})
    def Conv(ctx, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
             pads=None, strides=None):
        """N-D convolution on cuDNN (float16/float32, 1-3 spatial axes); the rest as im2col."""
        return conv_cudnn(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)

    @kernel("NhwcConv", since=1, domain="ortgpu", provider="cuda", types={"*": FLOAT})
    def NhwcConv(ctx, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                 pads=None, strides=None):
        """Channels-last 2-D convolution on cuDNN (float16/float32); the shared kernel otherwise."""
        return nhwc_conv_cudnn(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
