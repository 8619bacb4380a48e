"""Map inputs of the ai.onnx.ml domain: DictVectorizer and CastMap (a map is a Python dict)."""
import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.kernels.ml import ML
from ortgpu.providers.registry import kernel


def _check_map(op, X):
    if not isinstance(X, dict):
        raise InvalidArgument(f"{op}: input X must be a map (a dict), got {type(X).__name__}")


@kernel("DictVectorizer", since=1, domain=ML, provider="cpu", capturable=False,
        types={"T2": {"int64", "float32", "float64", "object"}})
def DictVectorizer(ctx, X, *, int64_vocabulary=None, string_vocabulary=None):
    """A [1, len(vocabulary)] row holding each vocabulary entry's value in the map (0 or "" where absent)."""
    _check_map("DictVectorizer", X)
    if string_vocabulary is not None and len(string_vocabulary):
        vocab = list(string_vocabulary)
    elif int64_vocabulary is not None and len(int64_vocabulary):
        vocab = [int(v) for v in int64_vocabulary]
    else:
        raise InvalidArgument("DictVectorizer needs string_vocabulary or int64_vocabulary")
    values = list(X.values())
    dtype = _value_dtype(ctx, values)
    out = np.full((1, len(vocab)), "" if dtype == object else 0, dtype=dtype)
    position = {k: i for i, k in enumerate(vocab)}
    for key, value in X.items():
        i = position.get(key.item() if isinstance(key, np.generic) else key)
        if i is not None:
            out[0, i] = value
    return out


def _value_dtype(ctx, values):
    """The output element type: the declared one, else that of the map's values."""
    dt = ctx.output_dtype(0)
    if dt is not None:
        return dt
    if values and isinstance(values[0], str):
        return np.dtype(object)
    return np.asarray(values).dtype if values else np.dtype(np.float32)


_CASTS = {"TO_FLOAT": np.float32, "TO_INT64": np.int64, "TO_STRING": object}


def _cast(value, to):
    if to is object:
        return value if isinstance(value, str) else f"{float(value):f}"  # C's "%f", as std::to_string
    if isinstance(value, str):
        return float(value) if to is np.float32 else int(value)
    return np.float32(value) if to is np.float32 else int(np.float32(value))


@kernel("CastMap", since=1, domain=ML, provider="cpu", capturable=False,
        types={"T2": {"int64", "float32", "object"}})
def CastMap(ctx, X, *, cast_to="TO_FLOAT", map_form="DENSE", max_map=1):
    """An int64-keyed map's values as a [1, n] tensor in key order: DENSE lists the entries,
    SPARSE places each at its key in max_map slots (pad 0, or "0.f" for strings as onnxruntime)."""
    _check_map("CastMap", X)
    if cast_to not in _CASTS:
        raise InvalidArgument(f"CastMap: cast_to must be TO_FLOAT, TO_STRING or TO_INT64, got {cast_to!r}")
    to = _CASTS[cast_to]
    items = sorted((int(k), v) for k, v in X.items())
    if map_form == "DENSE":
        out = np.empty((1, len(items)), dtype=to)
        for i, (_, v) in enumerate(items):
            out[0, i] = _cast(v, to)
        return out
    if map_form != "SPARSE":
        raise InvalidArgument(f"CastMap: map_form must be DENSE or SPARSE, got {map_form!r}")
    if items and items[0][0] < 0:
        raise InvalidArgument(f"CastMap: negative key {items[0][0]} in a SPARSE map")
    out = np.full((1, int(max_map)), "0.f" if to is object else 0, dtype=to)
    for k, v in items:
        if k < max_map:
            out[0, k] = _cast(v, to)
    return out
