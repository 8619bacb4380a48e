"""``ortgpu::Attention`` on the CUDA provider.

The Q/K/V projection is one cuBLAS GEMM (bias through its beta), the heads are strided
views of its result, and the past is concatenated on the sequence axis.  The attention core
then runs as cuDNN's fused SDPA through cudnn-frontend when the frontend is installed and
takes the problem (float16, head size a multiple of 8 up to 128): Q, K, V are described by
their strides, so no transpose is copied, and the output is written straight in the
(B, S, N * D) layout.  Otherwise :func:`attention_core` runs: one strided-batched cuBLAS
GEMM for the scores (the scale as its alpha), the attention bias added in place, the raw
softmax kernel, a second GEMM and one transpose copy.

The support rules (:func:`sdpa_supported`, :func:`sdpa_bias_shape`) and the core's arithmetic (:func:`attention_core`, given
NumPy stand-ins for the GEMM and the softmax) are tested on the CPU; the GPU paths were
written without a GPU and HAVE NEVER RUN.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from ortgpu.providers.cuda import blas
from ortgpu.providers.cuda.cudnn import cudnn_and_handle, frontend_installed, note_fallback
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.cuda.kernels.softmax import run_softmax
from ortgpu.providers.kernels import fused as shared_fused
from ortgpu.providers.kernels import fused_attention as shared
from ortgpu.providers.dtype_sets import FLOAT, INDEX
from ortgpu.providers.registry import KernelContext, kernel

SDPA_DTYPES = frozenset({np.dtype(np.float16)})
SDPA_MAX_HEAD = 128


def attention_core(xp, q, k, v, attention_bias, scale, matmul, softmax_rows):
    """softmax(q k^T * scale + attention_bias) v with q (B, N, S, D), k and v (B, N, T, D);
    returns (B, S, N * D).  ``matmul(a, b, alpha)`` is alpha * a @ b in a's dtype and
    ``softmax_rows(x2d)`` the softmax of each row."""
    b, n, s, d = q.shape
    t = k.shape[2]
    scores = matmul(q, k.transpose(0, 1, 3, 2), scale)
    if attention_bias is not None:
        scores += attention_bias.astype(scores.dtype, copy=False)
    probs = softmax_rows(scores.reshape(-1, t)).reshape(b, n, s, t)
    out = matmul(probs, v, 1.0)
    return xp.ascontiguousarray(out.transpose(0, 2, 1, 3)).reshape(b, s, n * d)


def sdpa_supported(q, k, v, attention_bias) -> bool:
    """Whether cuDNN's SDPA takes these operands (dtype, head size, a bias it can broadcast)."""
    d = q.shape[3]
    if np.dtype(q.dtype) not in SDPA_DTYPES or d % 8 or d > SDPA_MAX_HEAD:
        return False
    if any(np.dtype(a.dtype) != np.dtype(q.dtype) for a in (k, v)):
        return False
    return attention_bias is None or (np.dtype(attention_bias.dtype) == np.dtype(q.dtype)
                                      and attention_bias.ndim <= 4)


def sdpa_bias_shape(bias_shape, b, n, s, t) -> list[int]:
    """The attention bias as cuDNN takes it: 4-D, batch and heads may be 1, the score
    dims (S, T) materialized (broadcast rows are expanded before the call)."""
    full = [1] * (4 - len(bias_shape)) + [int(x) for x in bias_shape]
    if full[3] != t or full[2] not in (1, s) or full[1] not in (1, n) or full[0] not in (1, b):
        raise ValueError(f"Attention: attention_bias of shape {tuple(bias_shape)} does not broadcast to "
                         f"{(b, n, s, t)}")
    return [full[0], full[1], s, t]


# ----------------------------------------------------------------------------- cuDNN SDPA (GPU only)

_UNSUPPORTED = object()
_PLANS: dict = {}
_LOCK = threading.Lock()


def _elem_strides(a):
    return [st // a.itemsize for st in a.strides]


class _SdpaPlan:
    """A built cuDNN graph for one attention problem.  Never run."""

    def __init__(self, cudnn, handle, q, k, v, bias, scale):
        b, n, s, d = q.shape
        io = cudnn.data_type.HALF
        graph = cudnn.pygraph(io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT,
                              compute_data_type=cudnn.data_type.FLOAT, handle=handle)
        self.q = graph.tensor(name="Q", dim=list(q.shape), stride=_elem_strides(q), data_type=io)
        self.k = graph.tensor(name="K", dim=list(k.shape), stride=_elem_strides(k), data_type=io)
        self.v = graph.tensor(name="V", dim=list(v.shape), stride=_elem_strides(v), data_type=io)
        self.bias = None
        kw = {"attn_scale": float(scale)}
        if bias is not None:
            self.bias = graph.tensor(name="bias", dim=list(bias.shape), stride=_elem_strides(bias), data_type=io)
            kw["bias"] = self.bias
        try:
            o, _ = graph.sdpa(q=self.q, k=self.k, v=self.v, generate_stats=False, **kw)
        except TypeError:  # frontends before 1.12 name it is_inference
            o, _ = graph.sdpa(q=self.q, k=self.k, v=self.v, is_inference=True, **kw)
        # O in (B, S, N, D) memory order: the merged-heads output needs no transpose
        o.set_output(True).set_dim([b, n, s, d]).set_stride([s * n * d, d, n * d, 1]).set_data_type(io)
        self.o = o
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()
        self.graph = graph
        self.handle = handle   # keeps the handle (and so its id in the cache key) alive
        self.workspace_size = int(graph.get_workspace_size())

    def execute(self, cudnn, handle, xp, q, k, v, bias, out):
        workspace = xp.empty(max(self.workspace_size, 1), dtype=xp.uint8)
        cudnn.set_stream(handle=handle, stream=xp.cuda.get_current_stream().ptr)
        pack = {self.q: q, self.k: k, self.v: v, self.o: out}
        if self.bias is not None:
            pack[self.bias] = bias
        self.graph.execute(pack, workspace, handle=handle)


def _sdpa(xp, q, k, v, bias, scale):
    """(B, S, N * D) from cuDNN's SDPA, or None when cuDNN cannot take the problem.  Never run."""
    got = cudnn_and_handle(xp, "Attention (SDPA)")
    if got is None:
        return None
    cudnn, handle, device_id = got
    b, n, s, d = q.shape
    t = k.shape[2]
    if bias is not None:
        bias = xp.ascontiguousarray(xp.broadcast_to(bias.reshape([1] * (4 - bias.ndim) + list(bias.shape)),
                                                    sdpa_bias_shape(bias.shape, b, n, s, t)))
    # per handle (so per thread): a plan runs on the handle it was built with, kept alive by it
    key = (id(handle), device_id, tuple(q.shape), tuple(q.strides), tuple(k.shape), tuple(k.strides), tuple(v.strides),
           None if bias is None else (tuple(bias.shape), tuple(bias.strides)), float(scale))
    plan = _PLANS.get(key)
    if plan is None:
        try:
            plan = _SdpaPlan(cudnn, handle, q, k, v, bias, scale)
        except Exception as e:  # noqa: BLE001 - no engine for it (or another frontend API): the GEMM path runs
            note_fallback("Attention (SDPA) plan", e)
            plan = _UNSUPPORTED
        with _LOCK:
            _PLANS[key] = plan
    if plan is _UNSUPPORTED:
        return None
    out = xp.empty((b, s, n * d), dtype=q.dtype)
    plan.execute(cudnn, handle, xp, q, k, v, bias, out)
    return out


def _cublas_matmul(a, b, alpha, tf32=False):
    """alpha * a @ b on cuBLAS (strided-batched), in a's dtype.  Never run."""
    import cupy  # noqa: PLC0415
    a3, b3, ta, tb, out_shape = blas.plan_matmul(cupy, a, b)
    g = blas.cublas_args(a3, b3, ta, tb)
    out3 = cupy.empty((g["batch"], g["M"], g["N"]), dtype=a.dtype)
    blas.cublas_gemm(a3, b3, ta, tb, out3, alpha=float(alpha), tf32=tf32)
    return out3.reshape(out_shape)


@kernel("Attention", since=1, domain=shared.DOMAIN, provider="cuda", types={"*": FLOAT})
def Attention(ctx, input, weight, bias=None, attention_bias=None, past_key=None, past_value=None, *,
              num_heads=1, scale=1.0):
    """Self-attention: cuBLAS projection, then cuDNN SDPA or cuBLAS + the raw softmax."""
    args = (input, weight, bias, attention_bias, past_key, past_value)
    dt = np.dtype(input.dtype)
    if not cu.on_device(ctx, *args) or dt not in blas.GEMM_DTYPES or dt not in cu.FLOAT_TYPES \
            or any(a is not None and np.dtype(a.dtype) != dt for a in args[:3] + args[4:]):
        return shared.Attention(ctx, *args, num_heads=num_heads, scale=scale)
    xp = ctx.xp
    if (past_key is None) != (past_value is None):
        raise ValueError("Attention: past_key and past_value must be given together")
    b, s, n, d = shared.attention_geometry(input.shape, weight.shape, None if bias is None else bias.shape,
                                           num_heads, None if past_key is None else past_key.shape)
    qkv = blas.Gemm(ctx, input.reshape(b * s, -1), weight, bias)
    q, k, v = shared.split_heads(qkv.reshape(b, s, 3 * n * d), b, s, n, d)
    present_key = shared.with_past(xp, past_key, k)
    present_value = shared.with_past(xp, past_value, v)
    out = None
    if frontend_installed() and sdpa_supported(q, present_key, present_value, attention_bias):
        out = _sdpa(xp, q, present_key, present_value, attention_bias, scale)
    if out is None:
        out = attention_core(xp, q, present_key, present_value, attention_bias, scale,
                             functools.partial(_cublas_matmul, tf32=blas.use_tf32(ctx)),
                             lambda x: run_softmax(x, x.shape[0], x.shape[1], False))
    return (out, present_key, present_value)[:max(ctx.num_outputs, 1)]


def AttentionMS(ctx, input, weights, bias=None, mask_index=None, past=None, attention_bias=None,
                past_sequence_length=None, *, num_heads, qkv_hidden_sizes=None, unidirectional=0,
                mask_filter_value=-10000.0, scale=0.0, do_rotary=0, past_present_share_buffer=0,
                rotary_embedding_dim=0):
    """onnxruntime's com.microsoft Attention as the optimizer writes it (no mask_index, past
    stacked as (2, B, N, P, D), the attention bias (B|1, N|1, S, T)): the kernel above, with
    past and present split and stacked; any other form runs the shared contrib kernel."""
    from ortgpu.providers.kernels import contrib_attention  # noqa: PLC0415
    plain = (mask_index is None and not unidirectional and not qkv_hidden_sizes and not do_rotary
             and not past_present_share_buffer and past_sequence_length is None
             and (past is None or attention_bias is None) and weights.ndim == 2 and weights.shape[1] % 3 == 0
             and (past is None or (past.ndim == 5 and past.shape[0] == 2)))
    if not plain:
        return contrib_attention.Attention(
            ctx, input, weights, bias, mask_index, past, attention_bias, past_sequence_length,
            num_heads=num_heads, qkv_hidden_sizes=qkv_hidden_sizes, unidirectional=unidirectional,
            mask_filter_value=mask_filter_value, scale=scale, do_rotary=do_rotary,
            past_present_share_buffer=past_present_share_buffer, rotary_embedding_dim=rotary_embedding_dim)
    head = weights.shape[1] // 3 // max(int(num_heads), 1)
    three = KernelContext(ctx.xp, ctx.provider, ctx.node_name, ctx.op_type, ctx.opset, 3, (True,) * 3,
                          ctx.input_types, (), ctx.ep)
    out, present_key, present_value = Attention(
        three, input, weights, bias, attention_bias, None if past is None else past[0],
        None if past is None else past[1], num_heads=num_heads,
        scale=float(scale) if scale else 1.0 / float(np.sqrt(head)))
    if ctx.num_outputs > 1 and ctx.output_present[1]:
        return out, ctx.xp.stack([present_key, present_value])
    return out if ctx.num_outputs == 1 else (out, None)


shared_fused.register_unless_taken("Attention", shared_fused.MS_DOMAIN, "cuda", {"T": FLOAT, "M": INDEX}, AttentionMS)
