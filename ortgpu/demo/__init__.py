"""``ortgpu demo``: read text with PP-OCRv4 (detection + recognition, real weights shipped in
ortgpu/demo_models) from an image the demo draws itself, on the best available provider;
print the text, the placement, the latency and, when onnxruntime is installed, how far its
outputs are from onnxruntime's.  Needs nothing beyond ortgpu's own dependencies."""
from __future__ import annotations

import collections
import os
import statistics
import time

import numpy as np

from ortgpu.demo import ocr
from ortgpu.demo.font import render_lines

TEXT = ["HELLO WORLD!", "ONNX ON GPU"]
MODELS = {"det": "ch_PP-OCRv4_det_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx"}


def model_path(name: str) -> str:
    """Path of a shipped demo model ("det" or "rec")."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo_models", MODELS[name])


def demo_image() -> np.ndarray:
    """The demo's text image, HxWx3 uint8, sides padded to multiples of 32 for the detector."""
    return ocr.pad_to_multiple(render_lines(TEXT))


def rec_batch(image: np.ndarray, boxes) -> np.ndarray:
    """One recognizer input for all boxes: each crop at height 48, padded on the right to the
    widest with 0 (mid-gray after scaling), as PP-OCR batches lines."""
    crops = [ocr.line_input(image, b) for b in boxes]
    width = max(c.shape[3] for c in crops)
    return np.concatenate([np.pad(c, ((0, 0), (0, 0), (0, 0), (0, width - c.shape[3]))) for c in crops])


def read_text(det, rec, image: np.ndarray, chars=None):
    """(lines of text, detector map, recognizer probabilities, boxes) for `image`, with
    sessions of any runtime that has onnxruntime's API."""
    prob = det.run(None, {"x": ocr.to_input(image)})[0]
    grouped = ocr.group_lines(ocr.boxes_from_map(prob[0, 0]))
    boxes = [b for line in grouped for b in line]  # word boxes: the recognizer reads words best
    if not boxes:
        return [], prob, None, []
    probs = rec.run(None, {"x": rec_batch(image, boxes)})[0]
    chars = chars or ocr.alphabet(rec)
    words = iter(ocr.ctc_decode(p, chars)[0].strip() for p in probs)
    lines = [" ".join(next(words) for _ in line) for line in grouped]
    return lines, prob, probs, boxes


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _placement(sess) -> str:
    counts = collections.Counter(p for _, op, p in sess.get_provider_assignment() if not op.startswith("Memcpy"))
    copies = sum(1 for _, op, _ in sess.get_provider_assignment() if op.startswith("Memcpy"))
    return ", ".join(f"{n} nodes on {p}" for p, n in counts.items()) + f"; {copies} copies"


def run_demo(providers=None, runs: int = 1, out=print) -> int:
    """The demo; 0 when the text read is the text drawn, 1 otherwise."""
    import ortgpu
    out(f"ortgpu {ortgpu.__ortgpu_version__} (onnxruntime API {ortgpu.__version__}); "
        f"available providers: {', '.join(ortgpu.get_available_providers())}")
    image = demo_image()
    det = ortgpu.InferenceSession(model_path("det"), providers=providers)
    rec = ortgpu.InferenceSession(model_path("rec"), providers=providers)
    out(f"models: PP-OCRv4 detection + recognition (Apache-2.0, ortgpu/demo_models), "
        f"image {image.shape[1]}x{image.shape[0]} drawn by the demo")
    out(f"providers: {', '.join(det.get_providers())}")
    out(f"placement: det: {_placement(det)}")
    out(f"           rec: {_placement(rec)}")
    lines, prob, probs, boxes = read_text(det, rec, image)
    out("text drawn: " + " | ".join(TEXT))
    out("text read:  " + " | ".join(lines))
    same = lines == TEXT
    out(f"read correctly: {'yes' if same else 'NO'} ({len(boxes)} words found)")
    if runs > 0:
        x_det = ocr.to_input(image)
        det_ms = _median_ms(lambda: det.run(None, {"x": x_det}), runs)
        x_rec = rec_batch(image, boxes) if boxes else None
        rec_ms = _median_ms(lambda: rec.run(None, {"x": x_rec}), runs) if boxes else 0.0
        out(f"latency: det {det_ms:.1f} ms ({x_det.shape[2]}x{x_det.shape[3]}), rec {rec_ms:.1f} ms "
            f"({len(boxes)} words), median of {runs} run{'s' if runs > 1 else ''}")
    _compare_with_onnxruntime(image, prob, probs, lines, out)
    return 0 if same else 1


def _compare_with_onnxruntime(image, prob, probs, lines, out) -> None:
    try:
        import onnxruntime
    except ImportError:
        out("onnxruntime: not installed, no comparison")
        return
    quiet = onnxruntime.SessionOptions()
    quiet.log_severity_level = 3
    cpu = ["CPUExecutionProvider"]
    det = onnxruntime.InferenceSession(model_path("det"), quiet, providers=cpu)
    rec = onnxruntime.InferenceSession(model_path("rec"), quiet, providers=cpu)
    ref_lines, ref_prob, ref_probs, _ = read_text(det, rec, image)
    diff_det = float(np.abs(prob - ref_prob).max())
    diff_rec = float(np.abs(probs - ref_probs).max()) if probs is not None and ref_probs is not None \
        and probs.shape == ref_probs.shape else float("nan")
    out(f"onnxruntime {onnxruntime.__version__} CPU: max abs difference det {diff_det:.3g}, rec {diff_rec:.3g}; "
        f"text {'identical' if ref_lines == lines else 'DIFFERENT: ' + ' | '.join(ref_lines)}")
