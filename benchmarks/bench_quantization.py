"""Quantization benchmark: model size, accuracy (cosine to the float32 output) and latency of
fp32 / fp16 / int8 (dynamic, and static QDQ) / int4 weight-only (MatMulNBits) versions of each
model, each quantized by ortgpu's tool and by onnxruntime's under the same settings and
calibration feeds, and each timed on ortgpu's CPU provider and on onnxruntime's CPU provider.
On a machine with a GPU (ortgpu lists CUDAExecutionProvider and CuPy finds a device) ortgpu's
CUDA provider is timed too ("cuda ms"); otherwise that column is "n/a" and the script says CUDA
was not measured.

    python benchmarks/bench_quantization.py [--runs 20] [--json out.json] [--models a,b] [--ppocr-cls]

Models: the ResNet-style CNN, the BERT-shaped encoder layer, the GPT-2-shaped decoder and the MLP
of tests/quantization/qmodels.py (random weights, Gaussian calibration and evaluation feeds), and
the PP-OCRv4 recognizer shipped in ortgpu/demo_models (real weights; pre-processed and raised to
opset 13 as tests/quantization/test_quantize_ppocr.py does; calibrated on four drawn words,
evaluated on a fifth; dynamic int8 quantizes its MatMuls only, since onnxruntime's CPU
ConvInteger takes no int8 weights; static QDQ quantizes Conv and MatMul). --ppocr-cls adds the
PP-OCR classifier when tests/support/model_zoo.py has it cached. For the int8 static QDQ rows,
"unfused ms" is ortgpu with its QDQ fusions (QDQSelectorActionTransformer, ReluQuantFusion)
disabled: the speed effect of running the quantized ops instead of dequantize / float op /
quantize.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "quantization"))
import common  # noqa: E402
import qmodels as Q  # noqa: E402

QDQ_FUSIONS = ["QDQSelectorActionTransformer", "ReluQuantFusion"]


class Spec:
    """One benchmarked model: its float ModelProto, calibration feeds, one evaluation feed and
    per-tool keyword arguments for the dynamic and static quantizers."""

    def __init__(self, name, model, calibration, feed, dynamic_kw=None, static_kw=None):
        self.name, self.model, self.calibration, self.feed = name, model, calibration, feed
        self.dynamic_kw, self.static_kw = dynamic_kw or {}, static_kw or {}


def _random_spec(name, model, shape):
    calibration = Q.Reader("x", shape).feeds
    return Spec(name, model, calibration, Q.Reader("x", shape, 1, seed=9).feeds[0])


def _ppocr_rec_spec(tmp):
    """The shipped PP-OCRv4 recognizer, prepared as the PP-OCR quantization test prepares it."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "quantization"))
    from test_quantize_ppocr import CALIBRATION, _word_input  # noqa: PLC0415
    from ortgpu import quantization as oq
    from ortgpu.demo import model_path
    pre = os.path.join(tmp, "rec_pre.onnx")
    oq.quant_pre_process(model_path("rec"), pre)
    model = onnx.version_converter.convert_version(onnx.load(pre), 13)
    return Spec("ppocr_rec", model, [{"x": _word_input(w)} for w in CALIBRATION], {"x": _word_input("HELLO")},
                dynamic_kw={"op_types_to_quantize": ["MatMul"]},
                static_kw={"op_types_to_quantize": ["Conv", "MatMul"]})


def _cuda_ready(ortgpu) -> bool:
    return "CUDAExecutionProvider" in ortgpu.get_available_providers() and common.cuda_problem() is None


def _session(lib, path, disabled=(), cuda=False):
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    if disabled:   # ortgpu without its QDQ fusions: dequantize / float op / quantize as written
        return lib.InferenceSession(path, providers=providers, disabled_optimizers=list(disabled))
    return lib.InferenceSession(path, providers=providers)


def _variants(lib, spec, src, dst_dir, tag):
    """name -> path of each quantized version written by `lib` (ortgpu.quantization or onnxruntime's)."""
    out = {}
    p = os.path.join(dst_dir, f"{spec.name}_{tag}_int8_dynamic.onnx")
    lib.quantize_dynamic(src, p, weight_type=lib.QuantType.QInt8, **spec.dynamic_kw)
    out["int8 dynamic"] = p
    p = os.path.join(dst_dir, f"{spec.name}_{tag}_int8_qdq.onnx")
    lib.quantize_static(src, p, Q.FeedListReader(spec.calibration), quant_format=lib.QuantFormat.QDQ,
                        activation_type=lib.QuantType.QUInt8, weight_type=lib.QuantType.QInt8, per_channel=True,
                        **spec.static_kw)
    out["int8 static QDQ"] = p
    p = os.path.join(dst_dir, f"{spec.name}_{tag}_int4.onnx")
    try:
        if tag == "ortgpu":
            lib.MatMulNBitsQuantizer(src, block_size=32, is_symmetric=True).process_and_save(p)
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
            q = MatMulNBitsQuantizer(onnx.load(src), block_size=32, is_symmetric=True)
            q.process()
            onnx.save(q.model.model, p)
        out["int4 weight-only"] = p
    except ImportError as e:   # onnxruntime's quantizer needs onnx_ir
        print(f"  ({tag} int4 skipped: {e})")
    return out


def _time_row(row, path, feed, reference, runs, cuda):
    import onnxruntime
    import ortgpu
    runtimes = [("ortgpu", ortgpu, False), ("onnxruntime", onnxruntime, False)]
    if cuda:
        runtimes.append(("ortgpu_cuda", ortgpu, True))
    for rt, lib, on_gpu in runtimes:
        try:
            s = _session(lib, path, cuda=on_gpu)
            out = s.run(None, feed)[0]
            row[f"{rt}_ms"] = 1e3 * common.median_time(lambda: s.run(None, feed), runs, 2)
            row.setdefault("cosine", Q.cosine(out.astype(np.float32), reference))
        except Exception as e:  # noqa: BLE001 - a runtime that cannot run a variant is reported
            row[f"{rt}_ms"] = None
            row[f"{rt}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
    row.setdefault("ortgpu_cuda_ms", None)
    if "QDQ" in row["variant"]:   # the speed effect of the QDQ fusions: ortgpu with them off
        s = _session(ortgpu, path, QDQ_FUSIONS)
        row["ortgpu_unfused_ms"] = 1e3 * common.median_time(lambda: s.run(None, feed), runs, 2)


def bench_model(spec, runs, tmp, cuda):
    import onnxruntime
    from onnxruntime import quantization as rq
    from ortgpu import quantization as oq
    from ortgpu.precision import convert_model
    from ortgpu.precision.tensors import TARGET_DTYPES
    src = os.path.join(tmp, f"{spec.name}.onnx")
    onnx.save(spec.model, src)
    fp16 = os.path.join(tmp, f"{spec.name}_fp16.onnx")
    onnx.save(convert_model(spec.model, list(TARGET_DTYPES)[0], keep_io_types=True)[0], fp16)
    reference = _session(onnxruntime, src).run(None, spec.feed)[0]
    rows = [("fp32", "-", src), ("fp16", "-", fp16)]
    for tag, lib in (("ortgpu", oq), ("onnxruntime", rq)):
        rows += [(k, tag, p) for k, p in _variants(lib, spec, src, tmp, tag).items()]
    shapes = {k: list(v.shape) for k, v in spec.feed.items()}
    print(f"\n{spec.name}: input {shapes}")
    print(f"  {'variant':18s} {'tool':12s} {'bytes':>9s} {'cosine':>9s} {'ortgpu ms':>10s} {'onnxrt ms':>10s}"
          f" {'unfused ms':>10s} {'cuda ms':>10s}")
    fmt = lambda v: f"{v:10.3f}" if v is not None else f"{'n/a':>10s}"
    results = []
    for variant, tool, path in rows:
        row = {"model": spec.name, "variant": variant, "tool": tool, "bytes": os.path.getsize(path), "input": shapes}
        _time_row(row, path, spec.feed, reference, runs, cuda)
        results.append(row)
        print(f"  {variant:18s} {tool:12s} {row['bytes']:9d} {row.get('cosine', float('nan')):9.6f} "
              f"{fmt(row['ortgpu_ms'])} {fmt(row['onnxruntime_ms'])} {fmt(row.get('ortgpu_unfused_ms'))}"
              f" {fmt(row['ortgpu_cuda_ms'])}")
        for k in ("ortgpu_error", "onnxruntime_error", "ortgpu_cuda_error"):
            if k in row:
                print(f"      {k}: {row[k]}")
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--ppocr-cls", action="store_true")
    ap.add_argument("--models", help="comma-separated subset of resnet_cnn,bert_layer,gpt2_block,mlp,ppocr_rec")
    args = ap.parse_args()
    import logging
    logging.disable(logging.WARNING)
    import ortgpu
    cuda = _cuda_ready(ortgpu)
    load = common.load_average()
    print(f"machine: {common.machine()}  commit: {common.git_commit()}  load: {load}")
    print("CUDA: timed (ortgpu's CUDA provider)" if cuda else "CUDA: not measured (no GPU / CUDA provider on this machine)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = [lambda: _random_spec("resnet_cnn", Q.resnet_cnn(), (8, 3, 32, 32)),
                 lambda: _random_spec("bert_layer", Q.bert_layer(), (4, 16, 128)),
                 lambda: _random_spec("gpt2_block", Q.gpt2_block(), (4, 16, 64)),
                 lambda: _random_spec("mlp", Q.mlp(), (64, 128)),
                 lambda: _ppocr_rec_spec(tmp)]
        names = ["resnet_cnn", "bert_layer", "gpt2_block", "mlp", "ppocr_rec"]
        if args.ppocr_cls:
            sys.path.insert(0, os.path.join(HERE, "..", "tests"))
            from support.model_zoo import model_path  # noqa: PLC0415
            specs.append(lambda: _random_spec("ppocr_cls", onnx.load(model_path("ppocr_cls")), (1, 3, 48, 192)))
            names.append("ppocr_cls")
        wanted = set(args.models.split(",")) if args.models else set(names)
        start = time.time()
        for name, make in zip(names, specs):
            if name in wanted:
                results += bench_model(make(), args.runs, tmp, cuda)
    print(f"\n{time.time() - start:.0f} s; load after: {common.load_average()}")
    if args.json:
        common.write_json(args.json, {"machine": common.machine(), "commit": common.git_commit(), "load_before": load,
                                      "load_after": common.load_average(), "runs": args.runs,
                                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                      "cuda": "measured" if cuda else "not measured: no GPU on this machine",
                                      "results": results})


if __name__ == "__main__":
    main()
