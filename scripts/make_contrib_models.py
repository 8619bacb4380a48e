"""Build the small com.microsoft models under tests/data/contrib/ the way users get them.

Tiny random-weight BERT and GPT-2 configs (transformers), exported by torch to ONNX, then passed
through onnxruntime's transformer optimizer (``onnxruntime.transformers.optimizer.optimize_model``),
which fuses them into EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu /
FastGelu and LayerNormalization.  The float16 twins go through the optimizer's
``convert_float_to_float16`` with the ops that onnxruntime's CPU provider runs in float32 only
kept in float32 (Cast nodes around them), so onnxruntime can run them as the oracle.

Needs torch and transformers (not the default test dependencies):

    pip install torch==2.13.0 transformers      # or: pip install -e ".[export]"
    python scripts/make_contrib_models.py            # writes tests/data/contrib/*.onnx

Then the float32 models are quantized by onnxruntime's quantization tool, as users quantize
them (``--quantize-only`` redoes just this step from the committed float32 files; it needs only
onnxruntime):

* ``KIND_qdynamic``: ``quantize_dynamic`` (QOperator; Attention becomes QAttention, MatMul
  becomes DynamicQuantizeLinear + MatMulInteger, EmbedLayerNormalization becomes
  QEmbedLayerNormalization), and ``KIND_qdynamic_fused``: that model after onnxruntime's extended
  graph optimizations (DynamicQuantizeMatMul, MatMulIntegerToFloat);
* ``KIND_qstatic_qdq`` / ``KIND_qstatic_qop``: ``quantize_static`` with a small seeded
  calibration reader, QDQ and QOperator formats (uint8 activations, int8 weights);
* ``KIND_nbits4``: ``MatMulNBitsQuantizer``, 4-bit blocks of 32 (MatMulNBits).

The default tests (tests/contrib/test_contrib_models.py, test_contrib_quant_models.py) run the
committed files; this script is run again only to change them.  Weights are seeded, so a rerun writes the same models up to
exporter changes.
"""
from __future__ import annotations

import argparse
import pathlib
import tempfile

import numpy as np
import onnx

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "contrib"
HIDDEN, HEADS, LAYERS, VOCAB, POSITIONS = 32, 2, 2, 96, 64
# com.microsoft ops whose onnxruntime CPU kernels are float32 only: kept float32 in fp16 models
FLOAT32_ONLY = ["Attention", "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu",
                "MultiHeadAttention"]


def _bert():
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                     num_attention_heads=HEADS, intermediate_size=4 * HIDDEN,
                     max_position_embeddings=POSITIONS, type_vocab_size=2, attn_implementation="eager")

    class Bert(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = BertModel(cfg)

        def forward(self, input_ids, attention_mask, token_type_ids):
            o = self.m(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=token_type_ids, return_dict=True)
            return o.last_hidden_state, o.pooler_output

    model = Bert().eval()
    ids = torch.randint(0, VOCAB, (2, 7))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    outputs = ["last_hidden_state", "pooler_output"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    axes["pooler_output"] = {0: "batch"}
    return model, args, names, outputs, axes, "bert"


def _gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
                     use_cache=False, attn_implementation="eager")
    model = GPT2LMHeadModel(cfg).eval()

    class LogitsOnly(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    ids = torch.randint(0, VOCAB, (2, 7))
    names = ["input_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"}
    return LogitsOnly(model).eval(), (ids, torch.ones_like(ids)), names, ["logits"], axes, "gpt2"


def export(builder, tmp: pathlib.Path) -> tuple[pathlib.Path, str]:
    import torch
    model, args, names, outputs, axes, kind = builder()
    path = tmp / f"{kind}_raw.onnx"
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False, do_constant_folding=True)
    return path, kind


def optimize(raw: pathlib.Path, kind: str, fp16: bool) -> onnx.ModelProto:
    from onnxruntime.transformers.optimizer import optimize_model
    opt = optimize_model(str(raw), model_type=kind, num_heads=HEADS, hidden_size=HIDDEN, opt_level=0)
    if fp16:
        opt.convert_float_to_float16(keep_io_types=True, op_block_list=FLOAT32_ONLY)
    return opt.model


def calibration_feeds(model: onnx.ModelProto, count: int = 6, seed: int = 11) -> list[dict]:
    """Seeded batches of token ids (full attention masks, two segments) for quantize_static."""
    rng = np.random.default_rng(seed)
    names = [i.name for i in model.graph.input]
    batches = []
    for _ in range(count):
        ids = rng.integers(0, VOCAB, size=(2, 8)).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": (np.arange(8)[None] >= 4).astype(np.int64).repeat(2, 0)}
        batches.append({n: feed[n] for n in names})
    return batches


def untie_initializers(model: onnx.ModelProto) -> None:
    """Give each node its own copy of an initializer that several nodes share.  torch's exporter
    merges equal constants (BERT's zero LayerNorm and pooler biases become one tensor), and
    quantize_static in the QOperator format then quantizes the shared tensor once as uint8 for
    QEmbedLayerNormalization and hands that to QGemm as its int32 bias: onnxruntime refuses the
    result.  Untied, each consumer gets its own quantized copy."""
    inits = {t.name: t for t in model.graph.initializer}
    seen: set[str] = set()
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name not in inits:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__{node.name or node.op_type}_{i}"
                model.graph.initializer.append(copy)
                node.input[i] = copy.name
            seen.add(name)


def quantize(src: pathlib.Path, kind: str, out: pathlib.Path) -> list[pathlib.Path]:
    """The quantized twins of one optimized float32 model, written beside it."""
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quant_pre_process, quantize_static)
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    model = onnx.load(str(src))
    # the optimizer's files leave com.microsoft implied (onnxruntime accepts that); onnx's shape
    # inference, which the quantizer runs first, needs the import
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    untie_initializers(model)
    tmp = pathlib.Path(tempfile.mkdtemp())
    onnx.save(model, str(tmp / src.name))
    # onnxruntime's documented first step: its symbolic shape inference, which knows the
    # com.microsoft ops (onnx's does not, and the quantizer needs every tensor's type)
    src = tmp / f"{kind}_pre.onnx"
    quant_pre_process(str(tmp / f"{kind}_fp32.onnx"), str(src), skip_optimization=True)
    model = onnx.load(str(src))
    written = []
    dyn = out / f"{kind}_qdynamic.onnx"
    quantize_dynamic(str(src), str(dyn), weight_type=QuantType.QInt8)
    written.append(dyn)
    fused = out / f"{kind}_qdynamic_fused.onnx"
    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(fused)
    onnxruntime.InferenceSession(str(dyn), so, providers=["CPUExecutionProvider"])
    written.append(fused)
    for fmt, tag in ((QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qop")):
        dst = out / f"{kind}_qstatic_{tag}.onnx"
        quantize_static(str(src), str(dst), Reader(calibration_feeds(model)), quant_format=fmt,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        written.append(dst)
    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, bits=4)
    q = MatMulNBitsQuantizer(model, algo_config=config)
    q.process()
    dst = out / f"{kind}_nbits4.onnx"
    q.model.save_model_to_file(str(dst), use_external_data_format=False)
    written.append(dst)
    return written


def _report(path: pathlib.Path):
    m = onnx.load(str(path))
    ops = sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in m.graph.node})
    print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB, ops {ops}")


def main(argv=None):
    import logging
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    ap.add_argument("--quantize-only", action="store_true",
                    help="only quantize the float32 models already in --out (needs no torch)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    logging.disable(logging.INFO)
    if a.quantize_only:
        for kind in ("bert", "gpt2"):
            for path in quantize(a.out / f"{kind}_fp32.onnx", kind, a.out):
                _report(path)
        return
    with tempfile.TemporaryDirectory() as d:
        for builder in (_bert, _gpt2):
            raw, kind = export(builder, pathlib.Path(d))
            for fp16 in (False, True):
                m = optimize(raw, kind, fp16)
                name = a.out / f"{kind}_{'fp16' if fp16 else 'fp32'}.onnx"
                onnx.save(m, str(name))
                _report(name)
            for path in quantize(a.out / f"{kind}_fp32.onnx", kind, a.out):
                _report(path)


if __name__ == "__main__":
    main()
