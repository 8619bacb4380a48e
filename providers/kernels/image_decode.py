"""ImageDecoder: encoded image bytes -> uint8 [H, W, C], through Pillow when it is installed."""
import io

import numpy as np

from ortgpu.providers.registry import kernel

try:
    from PIL import Image
except ImportError:  # optional: without Pillow the op fails with a clear message
    Image = None


@kernel("ImageDecoder", since=20, provider="cpu",
        types={"T1": frozenset({"uint8"}), "T2": frozenset({"uint8"})})
def ImageDecoder(ctx, encoded_stream, *, pixel_format="RGB"):
    """Decode one image (BMP, JPEG, PNG, TIFF, WebP, PNM...) to HWC uint8; needs Pillow."""
    if Image is None:
        raise NotImplementedError("ImageDecoder needs the Pillow package (pip install pillow)")
    if pixel_format not in ("RGB", "BGR", "Grayscale"):
        raise ValueError(f"ImageDecoder: pixel_format must be RGB, BGR or Grayscale, got {pixel_format!r}")
    data = np.ascontiguousarray(encoded_stream, dtype=np.uint8).tobytes()
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:  # the spec asks for an empty result on undecodable input
        return np.zeros((0, 0, 1 if pixel_format == "Grayscale" else 3), dtype=np.uint8)
    if pixel_format == "Grayscale":
        return np.asarray(img.convert("L"), dtype=np.uint8)[:, :, None]
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1]) if pixel_format == "BGR" else rgb
