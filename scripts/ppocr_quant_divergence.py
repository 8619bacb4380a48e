"""Where do ortgpu and onnxruntime part on the PP-OCR models quantized by onnxruntime's tool?
(docs/design.md, "Why quantized outputs differ from onnxruntime".)

Quantizes the rapidocr classifier dynamically (QInt8) and the recognizer statically (QDQ), runs
both with every tensor made an output on onnxruntime (optimizations off) and on ortgpu, and prints
the output difference, the first integer tensor that differs, and for its first differing code the
float input each runtime quantized, divided by the scale each runtime used.

    python scripts/ppocr_quant_divergence.py     (models tier: fetches the rapidocr wheel once)
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference
from onnxruntime import quantization as rq

import ortgpu

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from support.model_zoo import model_path  # noqa: E402


def session(lib, model, optimize=False):
    so = lib.SessionOptions()
    so.graph_optimization_level = (lib.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else lib.GraphOptimizationLevel.ORT_DISABLE_ALL)
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return lib.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def all_outputs(path):
    """The model with every typed tensor as a graph output, and the producer of each."""
    m = onnx.load(path)
    inferred = shape_inference.infer_shapes(m)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    have = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o in types and o not in have:
                m.graph.output.append(onnx.helper.make_tensor_value_info(o, types[o], None))
    return m, {o: n for n in m.graph.node for o in n.output}


def divergence(path, feed, label):
    m, producer = all_outputs(path)
    names = [o.name for o in m.graph.output]
    a = dict(zip(names, session(ort, m).run(names, feed)))
    b = dict(zip(names, session(ortgpu, m).run(names, feed)))
    final = names[0]
    opt = session(ort, path, optimize=True).run([final], feed)[0]
    print(f"{label}: |ortgpu - onnxruntime| = {np.abs(a[final] - b[final]).max():.3g} (optimizations off); "
          f"onnxruntime on vs off: {np.abs(opt - a[final]).max():.3g}")
    differing = [n for n in names if a[n].size and not np.array_equal(a[n], b[n])]
    print(f"  {len(differing)} of {len(names)} tensors differ")
    q = next((n for n in names if n in differing and a[n].dtype.kind in "iu"), None)
    if q is None:
        return
    node = producer[q]
    idx = tuple(np.argwhere(a[q] != b[q])[0])
    x = node.input[0]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    if node.op_type == "DynamicQuantizeLinear":
        sa, sb = a[node.output[1]], b[node.output[1]]
    else:
        sa = sb = inits[node.input[1]]
    print(f"  first integer difference: {q} ({node.op_type}), {int((a[q] != b[q]).sum())} of {a[q].size} codes; "
          f"at {idx}: input {a[x][idx]!r} vs {b[x][idx]!r}, x/scale {a[x][idx] / sa:.7f} vs {b[x][idx] / sb:.7f}, "
          f"scales {float(sa)!r} vs {float(sb)!r}, codes {int(a[q][idx])} vs {int(b[q][idx])}")


class Reader:
    def __init__(self, rng, shape, n=4):
        self.feeds = [{"x": rng.random(shape, np.float32)} for _ in range(n)]

    def get_next(self):
        return self.feeds.pop(0) if self.feeds else None


def main():
    logging.disable(logging.WARNING)
    ort.set_default_logger_severity(3)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cls = os.path.join(tmp, "cls_dynamic.onnx")
        rq.quantize_dynamic(model_path("ppocr_cls"), cls, weight_type=rq.QuantType.QInt8)
        divergence(cls, {"x": rng.random((1, 3, 48, 192), np.float32)}, "PP-OCR classifier, dynamic QInt8")
        rec = os.path.join(tmp, "rec_qdq.onnx")
        rq.quantize_static(model_path("ppocrv4_rec"), rec, Reader(rng, (1, 3, 48, 320)), quant_format=rq.QuantFormat.QDQ)
        divergence(rec, {"x": rng.random((1, 3, 48, 320), np.float32)}, "PP-OCR v4 recognizer, static QDQ")


if __name__ == "__main__":
    main()
