"""LinearClassifier of the ai.onnx.ml domain (LinearRegressor lives in ml.py).

Scores are X @ coefficients.T + intercepts in float32.  A model with one coefficient row and two
class labels is the binary encoding: the label is the second one where the score is positive,
and the scores come out as two columns [1 - s, s] (of the logistic of s under LOGISTIC; the other
post_transforms are left out then, as onnxruntime does, so that both runtimes agree).
"""
import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.dtype_sets import STRING
from ortgpu.providers.kernels.ml import ML, post_transform_scores
from ortgpu.providers.registry import kernel

_INPUTS = frozenset({"float32", "float64", "int32", "int64"})


def rows_float32(X, op):
    """X as a float32 [N, features] matrix; a 1-D X is one row.  A scalar is refused."""
    if X.ndim == 0:
        raise InvalidArgument(f"{op}: input X needs at least one dimension, got a scalar")
    x = np.asarray(X, dtype=np.float32)
    return x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)


def class_labels(op, classlabels_strings, classlabels_ints):
    """The label list (strings or int64) as an array, and whether it holds strings."""
    if classlabels_strings is not None and len(classlabels_strings):
        return np.array(list(classlabels_strings), dtype=object), True
    if classlabels_ints is not None and len(classlabels_ints):
        return np.asarray(classlabels_ints, dtype=np.int64), False
    raise InvalidArgument(f"{op} needs classlabels_strings or classlabels_ints")


@kernel("LinearClassifier", since=1, domain=ML, provider="cpu",
        types={"T1": _INPUTS, "T2": STRING | frozenset({"int64"})}, capturable=False)
def LinearClassifier(ctx, X, *, coefficients, classlabels_ints=None, classlabels_strings=None,
                     intercepts=None, multi_class=0, post_transform="NONE"):
    """Top class label per row and the (post-transformed) class scores, as onnxruntime returns them."""
    x = rows_float32(X, "LinearClassifier")
    coef = np.asarray(coefficients, dtype=np.float32)
    inter = np.asarray(intercepts if intercepts is not None else (), dtype=np.float32)
    n_classes = inter.size or coef.size // max(x.shape[1], 1)
    if n_classes == 0 or coef.size != n_classes * x.shape[1]:
        raise InvalidArgument(f"LinearClassifier: {coef.size} coefficients do not make {n_classes} rows of "
                         f"{x.shape[1]} features (input X has {x.shape[1]} features)")
    labels, _ = class_labels("LinearClassifier", classlabels_strings, classlabels_ints)
    s = x @ coef.reshape(n_classes, -1).T
    if inter.size:
        s = s + inter
    if n_classes == 1:
        if labels.size != 2:
            raise InvalidArgument(f"LinearClassifier: one coefficient row (binary) needs 2 class labels, "
                             f"got {labels.size}")
        pos, neg = labels[1], labels[0]
        y = np.where(s[:, 0] > 0, pos, neg).astype(labels.dtype)
        return y, _binary_scores(s[:, 0], post_transform, add_second=labels.size == 2)
    y = labels[np.argmax(s, axis=1)]
    return y, post_transform_scores(np, s, post_transform).astype(np.float32)


def _binary_scores(s, post_transform, add_second):
    """onnxruntime's scores for one score per row: [1 - s, s] when a second class is added
    (PROBIT instead transforms the scores in place, leaving the second half zero)."""
    n = s.shape[0]
    if post_transform in ("PROBIT", 4):
        p = post_transform_scores(np, s.reshape(-1, 1), post_transform).reshape(-1)
        if not add_second:
            return p.reshape(n, 1).astype(np.float32)
        out = np.zeros(2 * n, np.float32)
        out[:n] = p
        return out.reshape(n, 2)
    if not add_second:
        return s.reshape(n, 1).astype(np.float32)
    if post_transform in ("LOGISTIC", 2):
        s = 1 / (1 + np.exp(-s))
    return np.stack([1 - s, s], axis=1).astype(np.float32)
