"""Generated inputs for a session (``ortgpu run`` / ``profile`` without --inputs): values of each
input's type and shape, with the shapes given by ``--shape name=1x3x640x640`` and sensible sizes
for the dimensions a model leaves free.

Values are chosen to be in range for what such inputs usually mean: floats are small normal
noise; integer inputs are zeros (token-type ids, indices, lengths), except token ids (name
ending in "ids", 0 or 1), masks (name containing "mask", ones) and audio sample rates ("sr",
"sample_rate": 16000); booleans are True.
"""
from __future__ import annotations

import numpy as np

from ortgpu.dtypes import elem_name


_BY_NAME = {elem_name(c): c for c in range(1, 30)}

IMAGE_SIDE = 224   # a free height/width of an NCHW image input
SEQUENCE = 16      # any other free dimension past the first (sequence length, samples, ...)
SAMPLE_RATE_NAMES = frozenset({"sr", "sample_rate", "sampling_rate"})


def _dtype_of(type_str: str):
    from ortgpu.dtypes import np_dtype
    inner = type_str[len("tensor("):-1]
    return np_dtype(_BY_NAME[inner])


def parse_shapes(specs: list[str], session) -> dict[str, list[int]]:
    """{input name: dims} from ``name=1x3x640x640`` texts, checked against the model's inputs
    (the name, the rank, the fixed dimensions); ValueError naming what is wrong."""
    inputs = {a.name: a for a in session.get_inputs()}
    out = {}
    for spec in specs:
        name, sep, dims_text = spec.rpartition("=")
        if not sep or not name:
            raise ValueError(f"--shape {spec!r}: expected NAME=DIMS such as x=1x3x640x640")
        if name not in inputs:
            raise ValueError(f"--shape {spec!r}: the model has no input '{name}'; its inputs are {list(inputs)}")
        try:
            dims = [int(d) for d in dims_text.lower().split("x")] if dims_text else []
        except ValueError:
            raise ValueError(f"--shape {spec!r}: dimensions must be integers separated by 'x'") from None
        if any(d < 0 for d in dims):
            raise ValueError(f"--shape {spec!r}: dimensions cannot be negative")
        declared = inputs[name].shape
        if declared and len(declared) != len(dims):
            raise ValueError(f"--shape {spec!r}: input '{name}' has rank {len(declared)} "
                             f"({_show(declared)}), not {len(dims)}")
        for i, (d, want) in enumerate(zip(dims, declared or [])):
            if isinstance(want, int) and want >= 0 and d != want:
                raise ValueError(f"--shape {spec!r}: dimension {i} of input '{name}' is fixed at {want} "
                                 f"({_show(declared)})")
        out[name] = dims
    return out


def _show(shape) -> str:
    return "x".join(str(d) if isinstance(d, int) else (d or "?") for d in shape)


def default_shape(declared) -> list[int]:
    """Sizes for free dims: 1 for the first (batch), IMAGE_SIDE for the height and width of a
    4-D input with 1 or 3 channels, SEQUENCE for the others."""
    declared = list(declared or [])
    image = len(declared) == 4 and declared[1] in (1, 3)
    out = []
    for i, d in enumerate(declared):
        if isinstance(d, int) and d >= 0:
            out.append(d)
        elif i == 0:
            out.append(1)
        else:
            out.append(IMAGE_SIDE if image and i >= 2 else SEQUENCE)
    return out


def make_inputs(session, seed: int = 0, shapes: dict | None = None, skip=()) -> dict:
    """{input name: array} for every input of `session` not in `skip` (tensors only), with the
    dims in `shapes` ({name: dims}) or default_shape's."""
    rng = np.random.default_rng(seed)
    shapes = shapes or {}
    feed = {}
    for arg in session.get_inputs():
        if arg.name in skip:
            continue
        if not arg.type.startswith("tensor("):
            raise ValueError(f"cannot generate a value for input '{arg.name}' of type {arg.type}; "
                             f"pass --inputs")
        shape = shapes.get(arg.name) or default_shape(arg.shape)
        feed[arg.name] = _value(arg.name, _dtype_of(arg.type), shape, rng)
    return feed


def _value(name: str, dtype, shape, rng) -> np.ndarray:
    lower = name.lower()
    if dtype == np.bool_:
        return np.ones(shape, dtype=bool)
    if dtype.kind in "iu":
        if "mask" in lower:
            return np.ones(shape, dtype=dtype)
        if lower in SAMPLE_RATE_NAMES:
            return np.full(shape, 16000, dtype=dtype)  # speech models take 16 kHz (some 8 kHz too)
        if lower.endswith("ids") and "type" not in lower:
            return rng.integers(0, 2, size=shape).astype(dtype)  # token ids: 0/1 exist in any vocabulary
        return np.zeros(shape, dtype=dtype)
    if dtype == object:
        return np.array(["a"] * int(np.prod(shape)), dtype=object).reshape(shape)
    return rng.standard_normal(shape).astype(np.float32).astype(dtype)
