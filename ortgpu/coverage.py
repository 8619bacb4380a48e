"""Operator coverage: which (domain, op, since-version) has a kernel on which provider, and
the element types each provider's kernel declares.

``python -m ortgpu.coverage > docs/OperatorKernels.md`` regenerates the table.
"""
from __future__ import annotations

import collections

import onnx.defs

import ortgpu  # noqa: F401  (registers the kernels)
from ortgpu.providers.dtype_sets import describe
from ortgpu.providers.registry import SHARED, registered

# The ai.onnx ops that onnxruntime's CUDA execution provider registers kernels for (its
# docs/OperatorKernels.md, CUDAExecutionProvider section, read 2026-11), leaving out the
# names that are not ONNX ops (Affine, Crop, DynamicSlice, ImageScaler, ParametricSoftplus,
# ScaledTanh, SimplifiedLayerNormalization, MemcpyFromHost/ToHost).  Each must run on
# ortgpu's CUDA provider: tests/test_cuda_coverage.py checks it.
ORT_CUDA_OPS = tuple("""
Abs Add And ArgMax ArgMin Attention AveragePool BatchNormalization Cast Ceil Clip Compress
Concat ConcatFromSequence ConstantOfShape Conv ConvTranspose Cos CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual
GridSample HardSigmoid HardSwish Identity If InstanceNormalization IsInf IsNaN LRN LSTM
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop MatMul MatMulInteger Max
MaxPool Min Mod Mul Neg NonZero Not OneHot Or PRelu Pad Pow QuantizeLinear RMSNormalization RNN
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare
Relu Reshape Resize ReverseSequence RoiAlign RotaryEmbedding Round Scan Scatter ScatterElements
ScatterND Selu SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert
SequenceLength Shape Shrink Sigmoid Sign Sin Size Slice Softmax Softplus Softsign SpaceToDepth
Split Sqrt Squeeze Sub Sum Tanh TensorScatter ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
""".split())


# The quantized com.microsoft ops that onnxruntime's CPU execution provider registers (1.32's
# get_all_opkernel_def()); each gets a row, with or without a kernel here.
ORT_CPU_CONTRIB_QUANT_OPS = tuple("""
DequantizeLinear DynamicQuantizeLSTM DynamicQuantizeMatMul GatherBlockQuantized MatMulBnb4 MatMulFpQ4
MatMulInteger16 MatMulIntegerToFloat MatMulNBits QAttention QEmbedLayerNormalization QGemm QLinearAdd
QLinearAveragePool QLinearConcat QLinearConv QLinearGlobalAveragePool QLinearLeakyRelu QLinearMul
QLinearSigmoid QLinearSoftmax QLinearWhere QMoE QuantizeLinear
""".split())


def contrib_rows(have, newest) -> list[dict]:
    """Rows of com.microsoft ops (no onnx schema: one version, 1): those listed above and any
    with a kernel."""
    ops = set(ORT_CPU_CONTRIB_QUANT_OPS) | {op for (d, op) in have if d == "com.microsoft"}
    rows = []
    for op in sorted(ops):
        got = have.get(("com.microsoft", op), {})
        covered = set().union(*got.values()) if got else set()
        rows.append({"domain": "com.microsoft", "op": op, "versions": [1],
                     "providers": {p: sorted(v) for p, v in got.items()},
                     "types": {p: k.types for p, k in newest.get(("com.microsoft", op), {}).items()},
                     "missing": [] if covered else [1], "function": False})
    return rows


def schema_versions() -> dict[tuple[str, str], list[int]]:
    """(domain, op) -> since-versions onnx defines (deprecated ops included)."""
    out: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for s in onnx.defs.get_all_schemas_with_history():
        out[(s.domain, s.name)].add(s.since_version)
    return {k: sorted(v) for k, v in out.items()}


def coverage() -> list[dict]:
    have: dict[tuple[str, str], dict[str, set[int]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    newest: dict[tuple[str, str], dict[str, object]] = collections.defaultdict(dict)
    for k in registered():
        have[(k.domain, k.op_type)][k.provider].add(k.since)
        if k.since >= getattr(newest[(k.domain, k.op_type)].get(k.provider), "since", -1):
            newest[(k.domain, k.op_type)][k.provider] = k
    rows = []
    for (domain, op), versions in sorted(schema_versions().items()):
        if domain not in ("", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training"):
            continue
        got = have.get((domain, op), {})
        covered = set().union(*got.values()) if got else set()
        schema = onnx.defs.get_schema(op, max(versions), domain)
        rows.append({"domain": domain or "ai.onnx", "op": op, "versions": versions,
                     "providers": {p: sorted(v) for p, v in got.items()},
                     "types": {p: k.types for p, k in newest.get((domain, op), {}).items()},
                     "missing": [v for v in versions if v not in covered],
                     "function": bool(schema.has_function or schema.has_context_dependent_function)})
    return rows + contrib_rows(have, newest)


def cuda_status(domain: str, op: str, providers: dict) -> str:
    """How ortgpu's CUDA provider runs an op: its own kernel, the shared kernel on CuPy, or
    the CPU (and why)."""
    from ortgpu.providers.cuda.provider import host_only_reason  # noqa: PLC0415
    if "cuda" in providers:
        return "cuda"
    if SHARED not in providers:
        return "CPU"
    shared = [k for k in registered() if k.provider == SHARED and k.op_type == op and k.domain == domain]
    return "CPU (host only)" if any(host_only_reason(k) for k in shared) else "shared"


def element_types(declared: dict) -> str:
    """The element types each provider's newest kernel declares, per type constraint."""
    def one(types):
        return " ".join(f"{c}={describe(t)}" for c, t in types.items()) or "(fixed by the schema)"
    return "; ".join(f"{p}: {one(t)}" for p, t in sorted(declared.items())) or "-"


def markdown() -> str:
    lines = ["# Operator kernels", "",
             "Generated by `python -m ortgpu.coverage`. `shared` kernels are written against the array",
             "module and run on NumPy (CPU) and CuPy (CUDA); `cpu` kernels run on the host only.",
             "An op without a kernel for a version but with an ONNX function body is expanded into",
             "that body at session creation (column *function*).",
             "Column *CUDA*: how the CUDA provider runs the op (`cuda`: raw CUDA, cuBLAS or cuDNN;",
             "`shared`: the shared kernel on CuPy; `CPU`: falls back to the CPU provider); *ORT CUDA*:",
             "onnxruntime's CUDA EP has a kernel for the op.  Element types CuPy cannot hold",
             "(bfloat16, float8, int4, strings) fall back to the CPU whatever the column says.",
             "Column *element types*: what each provider's kernel for the newest version declares",
             "per type constraint (`@kernel(..., types=...)`, the named sets of",
             "`providers/dtype_sets.py`; `A-B`: set A less set B); a node of other types goes to",
             "the next provider.", "",
             "| domain | op | since-versions (onnx) | kernels | versions without kernel | function "
             "| CUDA | ORT CUDA | element types |",
             "|---|---|---|---|---|---|---|---|---|"]
    ort_cuda = set(ORT_CUDA_OPS)
    for r in coverage():
        domain = "" if r["domain"] == "ai.onnx" else r["domain"]
        prov = "; ".join(f"{p}: {','.join(map(str, v))}" for p, v in sorted(r["providers"].items())) or "-"
        in_ort = "yes" if not domain and r["op"] in ort_cuda else ""
        lines.append(f"| {r['domain']} | {r['op']} | {','.join(map(str, r['versions']))} | {prov} | "
                     f"{','.join(map(str, r['missing'])) or '-'} | {'yes' if r['function'] else ''} | "
                     f"{cuda_status(domain, r['op'], r['providers'])} | {in_ort} | "
                     f"{element_types(r['types'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
