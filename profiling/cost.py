"""Work estimates from a node's shapes, and the peak the device could do.

FLOPs count a multiply-add as two: GEMMs, convolutions and recurrent cells (their matrix products)
from their shapes, pooling
and reductions one per input element, element-wise ops one per output element (a few for
transcendental ones); anything else counts bytes only.  Bytes are the node's input plus output
sizes (activation_size + parameter_size + output_size), a lower bound on its memory traffic.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time

import numpy as np

_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Clip", "Max", "Min", "Sum", "Mean",
    "Neg", "Abs", "Sqrt", "Reciprocal", "Pow", "Where", "Equal", "Greater", "Less", "GreaterOrEqual",
    "LessOrEqual", "And", "Or", "Not", "Xor", "BatchNormalization", "FusedBatchNormalization", "HardSigmoid",
    "HardSwish", "Floor", "Ceil", "Round", "Sign", "Mod", "BiasAdd",
}
_TRANSCENDENTAL = {  # op -> FLOPs per output element (rough)
    "Exp": 4, "Log": 4, "Tanh": 6, "Sigmoid": 5, "Erf": 6, "Gelu": 8, "FastGelu": 8,
    "Softmax": 5, "LogSoftmax": 6, "Sin": 4, "Cos": 4, "Softplus": 6, "Mish": 10, "Swish": 6,
    "LayerNormalization": 8, "SkipLayerNormalization": 9, "InstanceNormalization": 8,
    "GroupNormalization": 8, "SimplifiedLayerNormalization": 6,
}
_PER_INPUT = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceSum",
              "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare",
              "ReduceLogSumExp", "LpPool", "ArgMax", "ArgMin", "CumSum"}


def _n(shape) -> int:
    return math.prod(shape) if shape else 1


def flops(op: str, ins: list[list[int]], outs: list[list[int]]) -> int:
    """Estimated FLOPs of one call of `op` with input shapes `ins` and output shapes `outs`."""
    if not outs:
        return 0
    out = outs[0]
    if op in ("MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "MatMulNBits", "MatMulIntegerToFloat",
              "DynamicQuantizeMatMul", "MatMulBnb4", "FusedMatMulActivation") and ins and ins[0]:
        return 2 * _n(out) * ins[0][-1]
    fused = _fused_flops(op, ins, out)
    if fused is not None:
        return fused
    if op in ("Gemm", "FusedGemm", "QGemm") and len(ins) >= 2 and len(ins[0]) == 2 and len(out) == 2:
        a = ins[0]
        k = a[1] if a[0] == out[0] else a[0]
        return 2 * _n(out) * k
    if op in ("Conv", "FusedConv", "ConvInteger") and len(ins) >= 2 and len(ins[1]) >= 3:
        return 2 * _n(out) * _n(ins[1][1:])  # W is [M, C/group, k...]
    if op == "ConvTranspose" and len(ins) >= 2 and len(ins[1]) >= 3:
        return 2 * _n(ins[0]) * _n(ins[1][1:])
    if op in ("LSTM", "GRU", "RNN") and len(ins) >= 3 and len(ins[0]) == 3 and len(ins[1]) == 3:
        (seq, batch, _), (dirs, gates, width) = ins[0], ins[1]  # W is [dirs, gates*hidden, input]
        return 2 * seq * batch * dirs * gates * (width + ins[2][-1])  # R is [dirs, gates*hidden, hidden]
    if op in _ELEMENTWISE:
        return _n(out)
    if op in _TRANSCENDENTAL:
        return _TRANSCENDENTAL[op] * _n(out)
    if op in _PER_INPUT and ins:
        return _n(ins[0])
    return 0


def _fused_flops(op: str, ins, out) -> int | None:
    """FLOPs of com.microsoft's fused attention ops from their shapes (None: not one of them).

    Attention / QAttention: the packed QKV projection of input (B, S, Hin) by weights
    (Hin, 3H), then scores and context, 2*B*S*L*H each (L = S, past not counted).
    MultiHeadAttention / GroupQueryAttention / PackedAttention-like ops with separate query
    (B, S, Hq) and key (B, L, Hk): scores and context over the query's hidden size."""
    if op in ("Attention", "QAttention") and len(ins) >= 2 and len(ins[0]) == 3 and len(ins[1]) == 2:
        b, s, hin = ins[0]
        hidden = ins[1][1] // 3
        return 2 * b * s * hin * ins[1][1] + 4 * b * s * s * hidden
    if op in ("MultiHeadAttention", "GroupQueryAttention", "DecoderMaskedMultiHeadAttention",
              "SparseAttention") and ins and len(ins[0]) == 3:
        b, s, hq = ins[0]
        key = ins[1] if len(ins) > 1 and ins[1] and len(ins[1]) == 3 else None
        length = key[1] if key is not None else s
        hidden = out[-1] if out else hq
        return 4 * b * s * length * hidden
    return None


@dataclasses.dataclass
class Peak:
    """What a device can do at best: FLOP/s by element type ("float", "float16") and bytes/s."""

    device: str
    flops: dict
    bytes_per_s: float
    source: str  # "measured" or "datasheet"

    def flops_for(self, type_name: str) -> float:
        return self.flops.get(type_name, self.flops.get("float", 0.0))


# Datasheet peaks (dense, no sparsity): FP32 on CUDA cores, FP16 on tensor cores, HBM bandwidth.
_GPU_PEAKS = [  # (substring of the device name, fp32 FLOP/s, fp16 FLOP/s, bytes/s); first match wins
    ("H200", 67e12, 989e12, 4.8e12),
    ("H100 PCIe", 51e12, 756e12, 2.0e12),
    ("H100", 67e12, 989e12, 3.35e12),
    ("A100", 19.5e12, 312e12, 2.0e12),
    ("L40S", 91.6e12, 362e12, 0.864e12),
    ("L4", 30.3e12, 121e12, 0.3e12),
    ("A10", 31.2e12, 125e12, 0.6e12),
]


def gpu_peak(name: str) -> Peak | None:
    for key, fp32, fp16, bw in _GPU_PEAKS:
        if key in name:
            return Peak(name, {"float": fp32, "float16": fp16, "bfloat16": fp16}, bw, "datasheet")
    return None


def measure_cpu_peak(size: int = 1024, repeat: int = 3) -> Peak:
    """The CPU's float32 GEMM rate through NumPy's BLAS and its copy bandwidth, measured now
    (about a tenth of a second): the best this runtime's CPU kernels can reach."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    best = min(_timed(lambda: a @ a) for _ in range(repeat))
    src = np.ones(8 << 20, np.float32)  # 32 MiB
    dst = np.empty_like(src)
    copy = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeat))
    rate = 2 * size ** 3 / best
    return Peak("cpu", {"float": rate, "float16": rate}, 2 * src.nbytes / copy, "measured")


_PEAK_CACHE: dict[str, Peak] = {}


def cpu_peak_cache_path() -> str:
    """Where the measured CPU peak is kept between processes: $ORTGPU_CACHE_DIR (default
    ~/.cache/ortgpu)/cpu_peak.json."""
    root = os.environ.get("ORTGPU_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ortgpu")
    return os.path.join(root, "cpu_peak.json")


def _machine_key() -> str:
    return f"{platform.machine()}|{platform.processor()}|{os.cpu_count()}|numpy {np.__version__}"


def cached_cpu_peak() -> Peak:
    """The CPU peak measured once per machine (per CPU, core count and NumPy) and then read
    back, in this process and from :func:`cpu_peak_cache_path`: re-measuring for every report
    costs time and, on a loaded machine, gives a different answer each time."""
    key = _machine_key()
    if key in _PEAK_CACHE:
        return _PEAK_CACHE[key]
    path = cpu_peak_cache_path()
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("key") == key:
            peak = Peak("cpu", dict(saved["flops"]), float(saved["bytes_per_s"]), "measured, cached")
            _PEAK_CACHE[key] = peak
            return peak
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or one from another machine or version: measure
    peak = measure_cpu_peak()
    _PEAK_CACHE[key] = peak
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"key": key, "flops": peak.flops, "bytes_per_s": peak.bytes_per_s}, f)
    except OSError:
        pass  # a read-only home: cached in this process only
    return peak


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return max(time.perf_counter() - t0, 1e-9)
