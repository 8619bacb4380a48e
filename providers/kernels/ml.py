"""The ai.onnx.ml domain: feature extraction, encoders, scalers, linear models (trees: ml_trees.py)."""
import numpy as np

from ortgpu.providers.dtype_sets import INDEX, STRING
from ortgpu.providers.registry import kernel

ML = "ai.onnx.ml"


@kernel("ArrayFeatureExtractor", since=1, domain=ML,
        types={"T": INDEX | STRING | frozenset({"float32", "float64"})})
def ArrayFeatureExtractor(ctx, X, Y):
    """Select entries `Y` of the last axis; a 1-D X gives a [1, len(Y)] result (as onnxruntime)."""
    xp = ctx.xp
    idx = Y.reshape(-1)
    n = X.shape[-1]
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"ArrayFeatureExtractor: indices must be in [0, {n}), got {idx.tolist()}")
    out = xp.take(X, idx, axis=-1)
    return out.reshape(1, -1) if X.ndim == 1 else out


@kernel("Binarizer", since=1, domain=ML, types={"T": INDEX | frozenset({"float32", "float64"})})
def Binarizer(ctx, X, *, threshold=0.0):
    """1 where X > threshold, else 0, in X's type."""
    return (X > threshold).astype(X.dtype)


def _lookup(X, keys, values, default, out_dtype, nan_matches=True):
    """Map each element of X through keys -> values (the last duplicate key wins; NaN keys match NaN
    when `nan_matches`)."""
    values = np.asarray(values, dtype=out_dtype)
    if X.dtype == object:
        table = dict(zip(list(keys), list(values)))
        flat = [table.get(x, default) for x in X.reshape(-1)]
        out = np.empty(len(flat), dtype=out_dtype)
        out[:] = flat
        return out.reshape(X.shape)
    keys = np.asarray(keys).astype(X.dtype)
    out = np.full(X.shape, default, dtype=out_dtype)
    if keys.size == 0:
        return out
    nan_key = np.isnan(keys) if keys.dtype.kind == "f" else np.zeros(keys.shape, bool)
    # Keep the last occurrence of each key: unique over the reversed list keeps first of reversed.
    order = np.arange(len(keys))[::-1]
    plain = order[~nan_key[order]]
    uniq, first = np.unique(keys[plain], return_index=True)
    uvals = values[plain[first]]
    if uniq.size:
        pos = np.clip(np.searchsorted(uniq, X), 0, uniq.size - 1)
        hit = uniq[pos] == X
        out[hit] = uvals[pos[hit]]
    if nan_matches and nan_key.any():
        out[np.isnan(X)] = values[np.flatnonzero(nan_key)[-1]]
    return out


@kernel("LabelEncoder", since=1, domain=ML, provider="cpu",
        types={"T1": STRING | frozenset({"int64"}), "T2": STRING | frozenset({"int64"})})
def LabelEncoder1(ctx, X, *, classes_strings=(), default_int64=-1, default_string="_Unused"):
    """Strings -> their index in classes_strings, or int64 -> classes_strings[i] (defaults otherwise)."""
    classes = list(classes_strings)
    if X.dtype == object:
        return _lookup(X, classes, np.arange(len(classes), dtype=np.int64), default_int64, np.int64)
    flat = X.reshape(-1).astype(np.int64)
    out = np.empty(flat.size, dtype=object)
    out[:] = [classes[i] if 0 <= i < len(classes) else default_string for i in flat.tolist()]
    return out.reshape(X.shape)


@kernel("LabelEncoder", since=(2, 4), domain=ML, provider="cpu",
        types={"T1": INDEX | STRING | frozenset({"float32", "float64", "int16"}),
               "T2": INDEX | STRING | frozenset({"float32", "float64", "int16"})})
def LabelEncoder(ctx, X, *, default_float=-0.0, default_int64=-1, default_string="_Unused",
                 default_tensor=None, keys_floats=None, keys_int64s=None, keys_strings=None,
                 keys_tensor=None, values_floats=None, values_int64s=None, values_strings=None,
                 values_tensor=None):
    """Map elements through the keys_* -> values_* attributes, else the matching default_*.

    A repeated key maps to its last value (as opset 4 specifies; onnxruntime keeps the first).
    """
    keys = [k for k in (keys_floats, keys_int64s, keys_strings, keys_tensor) if k is not None]
    if len(keys) != 1:
        raise ValueError("LabelEncoder needs exactly one keys_* attribute")
    keys = keys[0]
    if isinstance(keys, np.ndarray):
        keys = keys.reshape(-1)
    if values_tensor is not None:
        values, dtype = values_tensor.reshape(-1), values_tensor.dtype
        if default_tensor is not None:
            default = np.asarray(default_tensor).reshape(-1)[0]
        else:
            default = (default_string if dtype == object else default_float if dtype.kind == "f"
                       else default_int64)
    elif values_floats is not None:
        values, dtype, default = values_floats, np.float32, default_float
    elif values_int64s is not None:
        values, dtype, default = values_int64s, np.int64, default_int64
    elif values_strings is not None:
        values, dtype, default = values_strings, object, default_string
    else:
        raise ValueError("LabelEncoder needs one values_* attribute")
    if len(keys) != len(values):
        raise ValueError(f"LabelEncoder: {len(keys)} keys but {len(values)} values")
    # Opset 4 made NaN keys match NaN inputs; before, as in onnxruntime, NaN matches nothing.
    return _lookup(X, keys, values, default, dtype, nan_matches=ctx.opset >= 4)


@kernel("Normalizer", since=1, domain=ML, types={"T": INDEX | frozenset({"float32", "float64"})})
def Normalizer(ctx, X, *, norm="MAX"):
    """Scale each row by its MAX, L1 or L2 norm; float32 output."""
    xp = ctx.xp
    x = X.astype(xp.float32)
    axis = -1
    if norm == "MAX":
        d = xp.max(x, axis=axis, keepdims=True)
    elif norm == "L1":
        d = xp.sum(xp.abs(x), axis=axis, keepdims=True)
    elif norm == "L2":
        d = xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True))
    else:
        raise ValueError(f"Normalizer: norm must be MAX, L1 or L2, got {norm!r}")
    return x / xp.where(d == 0, xp.float32(1), d)


def _per_feature(xp, values, name, n):
    """A list attribute holding one value or one per feature, as a float32 vector."""
    v = xp.asarray(values, dtype=xp.float32)
    if v.size not in (1, n):
        raise ValueError(f"{name} has {v.size} values for {n} features")
    return v


@kernel("Scaler", since=1, domain=ML, types={"T": INDEX | frozenset({"float32", "float64"})})
def Scaler(ctx, X, *, offset=(), scale=()):
    """(X - offset) * scale, per feature or broadcast from one value; float32 output."""
    xp = ctx.xp
    n = X.shape[-1] if X.ndim else 1
    x = X.astype(xp.float32)
    if len(offset):
        x = x - _per_feature(xp, offset, "offset", n)
    if len(scale):
        x = x * _per_feature(xp, scale, "scale", n)
    return x


@kernel("Imputer", since=1, domain=ML, types={"T": INDEX | frozenset({"float32", "float64"})})
def Imputer(ctx, X, *, imputed_value_floats=None, imputed_value_int64s=None,
            replaced_value_float=0.0, replaced_value_int64=0):
    """Replace the 'missing' marker (a float value, NaN included, or an int64) by per-feature values."""
    xp = ctx.xp
    n = X.shape[-1] if X.ndim else 1
    if imputed_value_floats is not None and len(imputed_value_floats):
        fill = _per_feature(xp, imputed_value_floats, "imputed_value_floats", n).astype(X.dtype)
        missing = xp.isnan(X) if np.isnan(replaced_value_float) else X == replaced_value_float
    elif imputed_value_int64s is not None and len(imputed_value_int64s):
        fill = xp.asarray(imputed_value_int64s, dtype=X.dtype)
        if fill.size not in (1, n):
            raise ValueError(f"imputed_value_int64s has {fill.size} values for {n} features")
        missing = X == replaced_value_int64
    else:
        raise ValueError("Imputer needs imputed_value_floats or imputed_value_int64s")
    return xp.where(missing, fill, X)


@kernel("OneHotEncoder", since=1, domain=ML, provider="cpu",
        types={"T": INDEX | STRING | frozenset({"float32", "float64"})})
def OneHotEncoder(ctx, X, *, cats_int64s=None, cats_strings=None, zeros=1):
    """One float32 indicator vector per element over the categories; unknowns are zeros (or an error)."""
    if cats_strings is not None and len(cats_strings):
        cats = list(cats_strings)
        idx = _lookup(X, cats, np.arange(len(cats), dtype=np.int64), -1, np.int64)
    elif cats_int64s is not None and len(cats_int64s):
        cats = list(cats_int64s)
        keys = np.asarray(cats, dtype=np.int64)
        idx = _lookup(X.astype(np.int64), keys, np.arange(len(cats), dtype=np.int64), -1, np.int64)
    else:
        raise ValueError("OneHotEncoder needs cats_int64s or cats_strings")
    if not zeros and (idx < 0).any():
        raise ValueError("OneHotEncoder: an input value is not among the categories and zeros=0")
    return (idx[..., None] == np.arange(len(cats))).astype(np.float32)


@kernel("FeatureVectorizer", since=1, domain=ML,
        types={"T1": INDEX | frozenset({"float32", "float64"})})
def FeatureVectorizer(ctx, *X, inputdimensions=()):
    """Concatenate inputs along the last axis, each cut or zero-padded to its inputdimensions entry."""
    xp = ctx.xp
    if len(inputdimensions) != len(X):
        raise ValueError(f"FeatureVectorizer: {len(X)} inputs but {len(inputdimensions)} inputdimensions")
    rows = X[0].shape[0] if X[0].ndim > 1 else 1
    parts = []
    for x, d in zip(X, inputdimensions):
        x = x.reshape(rows, -1).astype(xp.float32)
        if x.shape[1] >= d:
            parts.append(x[:, :d])
        else:
            parts.append(xp.concatenate([x, xp.zeros((rows, d - x.shape[1]), xp.float32)], axis=1))
    return xp.concatenate(parts, axis=1)


def post_transform_scores(xp, s, post_transform):
    """Apply an ML post_transform (NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO, PROBIT) over the last axis.

    Integer codes are those of TreeEnsemble.  With a single score per row, only PROBIT applies
    (as in onnxruntime).
    """
    if post_transform in ("NONE", 0) or (s.shape[-1] == 1 and post_transform not in ("PROBIT", 4)):
        return s
    if post_transform in ("LOGISTIC", 2):
        return 1 / (1 + xp.exp(-s))
    if post_transform in ("SOFTMAX", 1):
        e = xp.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if post_transform in ("SOFTMAX_ZERO", 3):  # zeros stay zero and take no part
        nz = s != 0
        m = xp.where(nz, s, -xp.inf).max(axis=-1, keepdims=True)
        e = xp.where(nz, xp.exp(s - xp.where(xp.isfinite(m), m, 0)), 0)
        tot = e.sum(axis=-1, keepdims=True)
        return e / xp.where(tot == 0, 1, tot)
    if post_transform in ("PROBIT", 4):
        return xp.sqrt(2.0) * _erfinv(xp, 2 * s - 1)
    raise ValueError(f"unknown post_transform {post_transform!r}")


def _erfinv(xp, y):
    """Inverse error function (Winitzki's closed-form approximation, as tree runtimes use)."""
    a = 0.147
    ln = xp.log((1 - y) * (1 + y))
    t = 2 / (np.pi * a) + ln / 2
    return xp.sign(y) * xp.sqrt(xp.sqrt(t * t - ln / a) - t)


@kernel("LinearRegressor", since=1, domain=ML,
        types={"T": INDEX | frozenset({"float32", "float64"})})
def LinearRegressor(ctx, X, *, coefficients=(), intercepts=(), post_transform="NONE", targets=1):
    """X @ coefficients.reshape(targets, C).T + intercepts, then post_transform; float32 [N, targets]."""
    xp = ctx.xp
    x = X.astype(xp.float32).reshape(X.shape[0] if X.ndim > 1 else 1, -1)
    w = xp.asarray(coefficients, dtype=xp.float32).reshape(targets, -1)
    y = x @ w.T
    if len(intercepts):
        y = y + xp.asarray(intercepts, dtype=xp.float32)
    return post_transform_scores(xp, y, post_transform).astype(xp.float32)


@kernel("CategoryMapper", since=1, domain=ML, provider="cpu",
        types={"T1": STRING | frozenset({"int64"}), "T2": STRING | frozenset({"int64"})})
def CategoryMapper(ctx, X, *, cats_int64s=(), cats_strings=(), default_int64=-1, default_string="_Unused"):
    """Strings -> int64 or int64 -> strings through the parallel cats_strings / cats_int64s lists."""
    if len(cats_int64s) != len(cats_strings):
        raise ValueError(f"CategoryMapper: {len(cats_strings)} cats_strings but "
                         f"{len(cats_int64s)} cats_int64s")
    if X.dtype == object:
        return _lookup(X, list(cats_strings), list(cats_int64s), default_int64, np.int64)
    return _lookup(X.astype(np.int64), list(cats_int64s), list(cats_strings), default_string, object)


@kernel("ZipMap", since=1, domain=ML, provider="cpu", types={})
def ZipMap(ctx, X, *, classlabels_int64s=None, classlabels_strings=None):
    """One {label: score} dict per row of X (a sequence of maps)."""
    labels = classlabels_strings if classlabels_strings else classlabels_int64s
    if not labels:
        raise ValueError("ZipMap needs classlabels_int64s or classlabels_strings")
    rows = X.reshape(-1, X.shape[-1]) if X.ndim else X.reshape(1, 1)
    if rows.shape[1] != len(labels):
        raise ValueError(f"ZipMap: {rows.shape[1]} scores per row but {len(labels)} labels")
    return [dict(zip(labels, r)) for r in rows.tolist()]
