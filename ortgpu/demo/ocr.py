"""A small OCR pipeline around PP-OCRv4 detection and recognition, in NumPy and SciPy only:
find text lines in an image (DB detector), read each (SVTR recognizer, CTC decoding).

The pre- and post-processing follow the models' published recipe (RapidOCR's config): inputs
scaled to [-1, 1]; the detector's probability map thresholded at 0.3, regions kept when their
mean probability passes 0.5 and grown by area * 1.6 / perimeter (the detector was trained on
shrunk text); lines resized to height 48 for the recognizer, whose classes are the blank, the
dictionary stored in the model's metadata ("character"), and a space.
"""
from __future__ import annotations

import dataclasses

import numpy as np

DET_THRESHOLD = 0.3
BOX_THRESHOLD = 0.5
UNCLIP_RATIO = 1.6
REC_HEIGHT = 48


@dataclasses.dataclass
class Line:
    box: tuple[int, int, int, int]   # top, bottom, left, right in image pixels
    text: str
    confidence: float                # mean probability of the kept characters


def to_input(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 1x3xHxW float32 in [-1, 1], as both models were trained."""
    x = image.astype(np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def pad_to_multiple(image: np.ndarray, k: int = 32, fill: int = 255) -> np.ndarray:
    """The detector wants sides that are multiples of 32: pad with the background."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, -h % k), (0, -w % k), (0, 0)), constant_values=fill)


def boxes_from_map(prob: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Text-line boxes (top, bottom, left, right) from the detector's HxW probability map,
    top to bottom."""
    from scipy import ndimage  # noqa: PLC0415
    labels, n = ndimage.label(prob > DET_THRESHOLD)
    h, w = prob.shape
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        region = labels[sl] == k
        if region.sum() < 9 or prob[sl][region].mean() < BOX_THRESHOLD:
            continue
        top, bottom, left, right = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        bh, bw = bottom - top, right - left
        grow = int(round(bh * bw * UNCLIP_RATIO / (2 * (bh + bw))))
        boxes.append((max(0, top - grow), min(h, bottom + grow), max(0, left - grow), min(w, right + grow)))
    return sorted(boxes)


def group_lines(boxes) -> list[list[tuple[int, int, int, int]]]:
    """Boxes grouped into lines (a box joins a line when its vertical centre lies within the
    line's first box), lines top to bottom, boxes left to right."""
    lines: list[list] = []
    for b in sorted(boxes, key=lambda b: (b[0] + b[1]) / 2):
        centre = (b[0] + b[1]) / 2
        for line in lines:
            if line[0][0] <= centre <= line[0][1]:
                line.append(b)
                break
        else:
            lines.append([b])
    return [sorted(line, key=lambda b: b[2]) for line in lines]


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWxC float32 resized with bilinear interpolation (pixel centres aligned)."""
    h, w = image.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def line_input(image: np.ndarray, box) -> np.ndarray:
    """The recognizer's input for one box: the crop at height 48, its aspect kept."""
    top, bottom, left, right = box
    crop = image[top:bottom, left:right]
    width = max(REC_HEIGHT // 2, int(round(REC_HEIGHT * crop.shape[1] / crop.shape[0])))
    return to_input(resize_bilinear(crop, REC_HEIGHT, width).round().astype(np.uint8))


def alphabet(rec_session) -> list[str]:
    """Class index -> character: blank, the dictionary of the model's metadata, space."""
    chars = rec_session.get_modelmeta().custom_metadata_map["character"].splitlines()
    return ["<blank>"] + chars + [" "]


def ctc_decode(probs: np.ndarray, chars: list[str]) -> tuple[str, float]:
    """Greedy CTC: the best class per step, repeats merged, blanks dropped."""
    best = probs.argmax(-1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    text = "".join(chars[i] for i in best[keep])
    conf = float(probs.max(-1)[keep].mean()) if keep.any() else 0.0
    return text, conf
