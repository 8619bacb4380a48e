"""Accuracy report: for each quantized activation, the scale and zero point chosen and the error
that quantizing it introduces on the calibration data, so the worst nodes can be excluded."""
from __future__ import annotations

import numpy as np
import onnx

from ortgpu.quantization import calibration
from ortgpu.quantization.graph_edit import load


def _pairs(qmodel: onnx.ModelProto):
    """(float tensor, dequantized tensor, scale, zero point) for each Q->DQ pair in a QDQ model."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    q_by_out = {n.output[0]: n for n in qmodel.graph.node if n.op_type == "QuantizeLinear"}
    for n in qmodel.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in q_by_out:
            q = q_by_out[n.input[0]]
            zp = inits.get(q.input[2]) if len(q.input) > 2 else None
            yield q.input[0], n.output[0], inits.get(q.input[1]), zp


def qdq_error_report(float_model, qdq_model, reader, providers=None) -> list[dict]:
    """Per Q/DQ pair of the quantized model: scale, zero point, and on the reader's feeds the
    relative RMS error (quantized vs float value of the same tensor, both from the QDQ run) and
    the cosine similarity. Sorted worst first."""
    qm = load(qdq_model)
    pairs = list(_pairs(qm))
    names = sorted({a for a, *_ in pairs} | {b for _, b, *_ in pairs})
    values = calibration.collect_activations(qm, names, reader, providers)
    rows = []
    for src, dst, scale, zp in pairs:
        a = np.concatenate([v.ravel() for v in values.get(src, [])]) if values.get(src) else None
        b = np.concatenate([v.ravel() for v in values.get(dst, [])]) if values.get(dst) else None
        if a is None or b is None or a.shape != b.shape:
            continue
        err = float(np.sqrt(np.mean((a - b) ** 2)) / (np.sqrt(np.mean(a ** 2)) + 1e-12))
        cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
        rows.append({"tensor": src, "scale": scale, "zero_point": zp, "relative_rms_error": err, "cosine": cos})
    rows.sort(key=lambda r: -r["relative_rms_error"])
    return rows


def format_report(rows) -> str:
    lines = [f"{'tensor':40s} {'scale':>12s} {'zero_point':>10s} {'rel_rms_err':>12s} {'cosine':>9s}"]
    for r in rows:
        zp = r["zero_point"]
        zp_s = str(zp.item() if hasattr(zp, "item") and np.size(zp) == 1 else zp)
        sc = r["scale"]
        sc_s = f"{float(sc):.4g}" if np.size(sc) == 1 else f"[{np.size(sc)} ch]"
        lines.append(f"{r['tensor'][:40]:40s} {sc_s:>12s} {zp_s:>10s} {r['relative_rms_error']:12.4g} {r['cosine']:9.6f}")
    return "\n".join(lines)
