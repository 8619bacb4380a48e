"""Quantization benchmark: model size, accuracy (cosine to the float32 output) and CPU latency of
fp32 / fp16 / int8 dynamic / int8 static QDQ / int4 weight-only versions of each model, each
quantized by ortgpu's tool and by onnxruntime's under the same settings and feeds, and each
timed on ortgpu's CPU provider and on onnxruntime's CPU provider.

    python benchmarks/bench_quantization.py [--runs 20] [--json out.json] [--ppocr]

Models: the ResNet-style CNN, the BERT-shaped encoder layer and the MLP of
tests/quantization/qmodels.py (random weights); --ppocr adds the PP-OCR classifier when
tests/model_zoo.py has it cached; --models picks some (resnet_cnn,bert_layer,mlp). For the int8
static QDQ rows, "unfused ms" is ortgpu with its QDQ fusions (QDQSelectorActionTransformer,
ReluQuantFusion) disabled: the speed effect of running the quantized ops instead of
dequantize / float op / quantize.  CUDA is not measured by this script (the int8 CUDA GEMM
kernel has only run on the host emulator).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "quantization"))
import common  # noqa: E402
import qmodels as Q  # noqa: E402


QDQ_FUSIONS = ["QDQSelectorActionTransformer", "ReluQuantFusion"]


def _session(lib, path, disabled=()):
    if disabled:   # ortgpu without its QDQ fusions: dequantize / float op / quantize as written
        return lib.InferenceSession(path, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
    return lib.InferenceSession(path, providers=["CPUExecutionProvider"])


def _variants(lib, src, dst_dir, tag, shape, input_name):
    """name -> path of each quantized version written by `lib` (ortgpu.quantization or onnxruntime's)."""
    out = {}
    p = os.path.join(dst_dir, f"{tag}_int8_dynamic.onnx")
    lib.quantize_dynamic(src, p, weight_type=lib.QuantType.QInt8)
    out["int8 dynamic"] = p
    p = os.path.join(dst_dir, f"{tag}_int8_qdq.onnx")
    lib.quantize_static(src, p, Q.Reader(input_name, shape), quant_format=lib.QuantFormat.QDQ,
                        activation_type=lib.QuantType.QUInt8, weight_type=lib.QuantType.QInt8, per_channel=True)
    out["int8 static QDQ"] = p
    try:
        if tag == "ortgpu":
            q = lib.MatMulNBitsQuantizer(src, block_size=32, is_symmetric=True)
            q.process_and_save(p := os.path.join(dst_dir, f"{tag}_int4.onnx"))
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
            q = MatMulNBitsQuantizer(onnx.load(src), block_size=32, is_symmetric=True)
            q.process()
            onnx.save(q.model.model, p := os.path.join(dst_dir, f"{tag}_int4.onnx"))
        out["int4 weight-only"] = p
    except ImportError as e:   # onnxruntime's quantizer needs onnx_ir
        print(f"  ({tag} int4 skipped: {e})")
    return out


def bench_model(name, model, shape, input_name, runs, tmp):
    import onnxruntime
    import ortgpu
    from onnxruntime import quantization as rq
    from ortgpu import quantization as oq
    from ortgpu.precision import convert_model
    from ortgpu.precision.tensors import TARGET_DTYPES
    src = os.path.join(tmp, f"{name}.onnx")
    onnx.save(model, src)
    fp16 = os.path.join(tmp, f"{name}_fp16.onnx")
    onnx.save(convert_model(model, list(TARGET_DTYPES)[0], keep_io_types=True)[0], fp16)
    feed = Q.Reader(input_name, shape, 1, seed=9).feeds[0]
    reference = _session(onnxruntime, src).run(None, feed)[0]
    rows = [("fp32", "-", src), ("fp16", "-", fp16)]
    for tag, lib in (("ortgpu", oq), ("onnxruntime", rq)):
        rows += [(k, tag, p) for k, p in _variants(lib, src, tmp, f"{name}_{tag}", shape, input_name).items()]
    results = []
    print(f"\n{name}: input {shape}")
    print(f"  {'variant':18s} {'tool':12s} {'bytes':>9s} {'cosine':>9s} {'ortgpu ms':>10s} {'onnxrt ms':>10s}"
          f" {'unfused ms':>10s}")
    for variant, tool, path in rows:
        row = {"model": name, "variant": variant, "tool": tool, "bytes": os.path.getsize(path)}
        for rt, lib in (("ortgpu", ortgpu), ("onnxruntime", onnxruntime)):
            try:
                s = _session(lib, path)
                out = s.run(None, feed)[0]
                row[f"{rt}_ms"] = 1e3 * common.median_time(lambda: s.run(None, feed), runs, 2)
                row.setdefault("cosine", Q.cosine(out.astype(np.float32), reference))
            except Exception as e:  # noqa: BLE001 - a runtime that cannot run a variant is reported
                row[f"{rt}_ms"] = None
                row[f"{rt}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
        if "QDQ" in variant:   # the speed effect of the QDQ fusions: ortgpu with them off
            s = _session(ortgpu, path, QDQ_FUSIONS)
            row["ortgpu_unfused_ms"] = 1e3 * common.median_time(lambda: s.run(None, feed), runs, 2)
        results.append(row)
        fmt = lambda v: f"{v:10.3f}" if v is not None else f"{'n/a':>10s}"
        print(f"  {variant:18s} {tool:12s} {row['bytes']:9d} {row.get('cosine', float('nan')):9.6f} "
              f"{fmt(row['ortgpu_ms'])} {fmt(row['onnxruntime_ms'])} {fmt(row.get('ortgpu_unfused_ms'))}")
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--ppocr", action="store_true")
    ap.add_argument("--models", help="comma-separated subset of resnet_cnn,bert_layer,mlp")
    args = ap.parse_args()
    import logging
    logging.disable(logging.WARNING)
    print(f"machine: {common.machine()}  commit: {common.git_commit()}  (CPU provider only; CUDA not measured)")
    models = [("resnet_cnn", Q.resnet_cnn(), (8, 3, 32, 32), "x"), ("bert_layer", Q.bert_layer(), (4, 16, 128), "x"),
              ("mlp", Q.mlp(), (64, 128), "x")]
    if args.models:
        models = [m for m in models if m[0] in args.models.split(",")]
    if args.ppocr:
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from support.model_zoo import model_path  # noqa: PLC0415
        models.append(("ppocr_cls", onnx.load(model_path("ppocr_cls")), (1, 3, 48, 192), "x"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, shape, input_name in models:
            results += bench_model(name, model, shape, input_name, args.runs, tmp)
    if args.json:
        common.write_json(args.json, {"machine": common.machine(), "commit": common.git_commit(), "results": results})


if __name__ == "__main__":
    main()
