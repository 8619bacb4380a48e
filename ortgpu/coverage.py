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


# The com.microsoft ops that onnxruntime's CPU execution provider registers (its
# docs/OperatorKernels.md, CPUExecutionProvider section, com.microsoft rows, read 2026-12; all at
# since-version 1), and the com.microsoft ops its transformer tools write that only its CUDA
# provider runs.  The coverage table lists each with ortgpu's kernels.
ORT_CPU_MS_OPS = tuple("""
Attention AttnLSTM BeamSearch BiasGelu BifurcationDetector CDist ConvTransposeWithDynamicPads
CropAndResize DecoderMaskedMultiHeadAttention DequantizeLinear DynamicQuantizeLSTM
DynamicQuantizeMatMul DynamicTimeWarping EmbedLayerNormalization ExpandDims FastGelu FusedConv
FusedGemm FusedMatMul GatherBlockQuantized GatherND Gelu GreedySearch GridSample
GroupQueryAttention Inverse MatMulBnb4 MatMulFpQ4 MatMulInteger16 MatMulIntegerToFloat MatMulNBits
MaxpoolWithMask MoE MultiHeadAttention MurmurHash3 NGramRepeatBlock NhwcMaxPool Pad QAttention
QEmbedLayerNormalization QGemm QLinearAdd QLinearConv QLinearLeakyRelu QLinearMul QLinearSigmoid
QLinearSoftmax QLinearWhere QMoE QuantizeLinear QuickGelu Range RotaryEmbedding SampleOp Sampling
SkipLayerNormalization SkipSimplifiedLayerNormalization SparseAttention SparseToDenseMatMul
Tokenizer TransposeMatMul Trilu UnfoldTensor Unique WhisperBeamSearch WordConvEmbedding
""".split()) + tuple("""
BranchwiseRMSNorm CausalConvWithState EngramGate GatedAdd GatedDeltaNet GatedRMSNorm GatherPacked
HyperConnectionPostMix HyperConnectionPreMix LinearAttention LinearAttentionGate MRotaryEmbedding
MoEGroupRouter NGramHashMapping QLinearAveragePool QLinearConcat QLinearGlobalAveragePool ScaledSiLU
VarlenCausalConvWithState VarlenNGramHashMapping
""".split())   # registered by onnxruntime 1.32's CPU provider (get_all_opkernel_def) but not in that doc
ORT_CUDA_ONLY_MS_OPS = ("BiasAdd", "BiasSoftmax", "BiasSplitGelu", "GroupNorm", "NhwcConv", "SkipGroupNorm")
# The com.microsoft ops that onnxruntime's CUDA execution provider registers (its
# docs/OperatorKernels.md, CUDAExecutionProvider section, com.microsoft rows, read 2026-12).
ORT_CUDA_MS_OPS = frozenset("""
Attention BeamSearch BiasAdd BiasDropout BiasGelu BiasSoftmax BiasSplitGelu BitmaskBiasDropout
BitmaskDropout ComplexMul ComplexMulConj ConvTransposeWithDynamicPads DecoderAttention
DecoderMaskedMultiHeadAttention DecoderMaskedSelfAttention DequantizeLinear DequantizeWithOrder
DynamicTimeWarping EmbedLayerNormalization FastGelu FusedConv FusedMatMul GatedRelativePositionBias
GatherBlockQuantized Gelu GemmFloat8 GemmaRotaryEmbedding GreedySearch GridSample GroupNorm
GroupQueryAttention Inverse Irfft LongformerAttention MatMulBnb4 MatMulNBits MoE MultiHeadAttention
NGramRepeatBlock NhwcConv PackedAttention PackedMultiHeadAttention PagedAttention QAttention QMoE
QOrderedAttention QOrderedGelu QOrderedLayerNormalization QOrderedLongformerAttention QOrderedMatMul
QuantizeLinear QuantizeWithOrder QuickGelu RelativePositionBias RemovePadding RestorePadding Rfft
RotaryEmbedding Sampling SkipGroupNorm SkipLayerNormalization SkipSimplifiedLayerNormalization
SparseAttention TransposeMatMul Trilu UnfoldTensor WhisperBeamSearch
""".split())
# onnxruntime's own ops in the ai.onnx domain that onnx has no schema for (CPU provider)
ORT_CPU_ONNX_EXTRA_OPS = ("SimplifiedLayerNormalization",)


def contrib_rows() -> list[dict]:
    """One row per onnxruntime com.microsoft op (and its schema-less ai.onnx ops): where
    onnxruntime runs it and which ortgpu kernels exist (all at since-version 1)."""
    have: dict[tuple[str, str], dict[str, set[int]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for k in registered():
        have[(k.domain, k.op_type)][k.provider].add(k.since)
    wanted = [("com.microsoft", op, "CPU") for op in ORT_CPU_MS_OPS]
    wanted += [("com.microsoft", op, "CUDA only") for op in ORT_CUDA_ONLY_MS_OPS]
    wanted += [("", op, "CPU") for op in ORT_CPU_ONNX_EXTRA_OPS]
    newest = {}
    for k in registered():
        if k.since >= getattr(newest.get((k.domain, k.op_type, k.provider)), "since", -1):
            newest[(k.domain, k.op_type, k.provider)] = k
    rows = []
    for domain, op, where in sorted(wanted, key=lambda w: (w[0], w[1])):
        got = {p: sorted(v) for p, v in have.get((domain, op), {}).items()}
        rows.append({"domain": domain or "ai.onnx", "op": op, "ort": where, "providers": got,
                     "types": {p: newest[(domain, op, p)].types for p in got},
                     "missing": [] if got else [1]})
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
    return rows


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
    lines += ["", "## onnxruntime's contrib ops", "",
              "The com.microsoft ops of onnxruntime's CPU provider (its OperatorKernels.md), the ones",
              "its transformer tools write for its CUDA provider only, and its ai.onnx ops without an",
              "onnx schema; all are since-version 1.  Column *onnxruntime*: which of its providers runs",
              "the op; *ORT CUDA*: its CUDA provider has a kernel for it.", "",
              "| domain | op | onnxruntime | kernels | CUDA | ORT CUDA | element types |",
              "|---|---|---|---|---|---|---|"]
    for r in contrib_rows():
        domain = "" if r["domain"] == "ai.onnx" else r["domain"]
        prov = "; ".join(f"{p}: {','.join(map(str, v))}" for p, v in sorted(r["providers"].items())) or "-"
        cuda = cuda_status(domain, r["op"], r["providers"]) if r["providers"] else "-"
        in_ort = "yes" if domain == "com.microsoft" and r["op"] in ORT_CUDA_MS_OPS else ""
        lines.append(f"| {r['domain']} | {r['op']} | {r['ort']} | {prov} | {cuda} | {in_ort} | "
                     f"{element_types(r['types'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
