"""TreeEnsembleClassifier of the ai.onnx.ml domain (the forest itself: ml_trees.py).

The class scores are the sums of the leaf weights the trees reach, plus base_values.  The two-class
case follows onnxruntime's rules, which depend on whether the weights name one class only (the
"binary case", as gradient boosting writes it) and whether they are all positive: they pick the
label and the two score columns ([1 - p, p], or [-s, s] / logistic(-s), logistic(s)).
"""
import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.dtype_sets import STRING
from ortgpu.providers.kernels.ml import ML, post_transform_scores
from ortgpu.providers.kernels.ml_linear import class_labels
from ortgpu.providers.kernels.ml_trees import _flat, _old_forest
from ortgpu.providers.registry import kernel

_INPUTS = frozenset({"float32", "float64", "int32", "int64"})


def _class_sums(forest, X):
    """Summed weights per class [N, C] and whether any reached leaf voted for the class."""
    leaf = forest.leaves(X)
    sums = np.zeros((X.shape[0], forest.n_targets))
    voted = np.zeros((X.shape[0], forest.n_targets), dtype=bool)
    for t in range(leaf.shape[1]):
        sums += forest.weights[leaf[:, t]]
        voted |= forest.voted[leaf[:, t]]
    return sums, voted


def _binary_label(pos, binary_case, all_positive, labels):
    """(label index, how to write the second score) from the positive-class weight."""
    if binary_case:
        if all_positive:
            return np.where(pos > 0.5, 1, 0), np.where(pos > 0.5, 0, 1)
        return np.where(pos > 0, 1, 0), np.where(pos > 0, 2, 3)
    return np.where(pos > 0, 1, 0), np.full(pos.shape, -1)


def _two_class(s, voted, base, post, binary_case, all_positive, labels):
    """Labels and [N, 2] scores of a two-label ensemble (onnxruntime's rules, row by row)."""
    s0, s1 = s[:, 0].copy(), s[:, 1].copy()
    has0, has1 = voted[:, 0], voted[:, 1].copy()
    write = np.full(s.shape[0], -1)
    if len(base) == 2:
        s1 = np.where(has1, base[1] + s0, s1 + base[1])
        s0 = np.where(has1, -(base[1] + s[:, 0]), s0 + base[0])
        two = np.ones(s.shape[0], bool)
    elif len(base) == 1:
        s0 = s0 + base[0]
        two = has1
    else:
        write[:] = 3
        two = has1
    pos = np.where(two & has1, s1, np.where(has0, s0, 0.0))
    idx, how = _binary_label(pos, binary_case, all_positive, labels)
    if binary_case:
        write = how
    z = np.zeros((s.shape[0], 2))
    # a class no tree voted for scores 0 (its base value is not added), as in onnxruntime
    both = np.where(np.stack([has0, has1], axis=1), np.stack([s0, s1], axis=1), 0.0)
    both = post_transform_scores(np, both, post)
    z[two] = both[two]
    one = ~two
    if one.any():
        z[one] = _one_score(s0[one], post, write[one])
    if not binary_case and labels.dtype != object:
        # onnxruntime answers 1 or 0 themselves here, not the labels (its strings are indexed)
        return idx.astype(np.int64), z.astype(np.float32)
    return labels[idx], z.astype(np.float32)


def _one_score(s, post, write):
    """Two columns from one score per row, as onnxruntime's write_scores does."""
    z = np.zeros((s.size, 2))
    if post in ("PROBIT", 4):
        z[:, 0] = post_transform_scores(np, s.reshape(-1, 1), post).reshape(-1)
        return z
    logistic = post in ("LOGISTIC", 2)
    flip = (write == 0) | (write == 1)
    mixed = (write == 2) | (write == 3)
    p = 1 / (1 + np.exp(-s[flip])) if logistic else s[flip]
    z[flip, 0], z[flip, 1] = 1 - p, p
    if logistic:
        z[mixed, 0], z[mixed, 1] = 1 / (1 + np.exp(s[mixed])), 1 / (1 + np.exp(-s[mixed]))
    else:
        z[mixed, 0], z[mixed, 1] = -s[mixed], s[mixed]
    plain = ~(flip | mixed)
    z[plain, 0] = s[plain]
    return z


@kernel("TreeEnsembleClassifier", since=(1, 3, 5), domain=ML, provider="cpu",
        types={"T1": _INPUTS, "T2": STRING | frozenset({"int64"})}, capturable=False)
def TreeEnsembleClassifier(ctx, X, *, base_values=None, base_values_as_tensor=None, class_ids=(),
                           class_nodeids=(), class_treeids=(), class_weights=None,
                           class_weights_as_tensor=None, classlabels_int64s=None,
                           classlabels_strings=None, nodes_falsenodeids=(), nodes_featureids=(),
                           nodes_hitrates=None, nodes_hitrates_as_tensor=None,
                           nodes_missing_value_tracks_true=(), nodes_modes=(), nodes_nodeids=(),
                           nodes_treeids=(), nodes_truenodeids=(), nodes_values=None,
                           nodes_values_as_tensor=None, post_transform="NONE"):
    """Top class label per row and the class scores, as onnxruntime computes them."""
    labels, _ = class_labels("TreeEnsembleClassifier", classlabels_strings, classlabels_int64s)
    values = _flat(nodes_values_as_tensor) if nodes_values_as_tensor is not None else list(nodes_values or ())
    weights = (_flat(class_weights_as_tensor) if class_weights_as_tensor is not None
               else list(class_weights or ()))
    base = _flat(base_values_as_tensor) if base_values_as_tensor is not None else list(base_values or ())
    if len(weights) != len(class_ids):
        raise InvalidArgument(f"TreeEnsembleClassifier: {len(class_ids)} class_ids but {len(weights)} weights")
    forest = _old_forest(nodes_treeids, nodes_nodeids, nodes_modes, nodes_featureids, values,
                         nodes_truenodeids, nodes_falsenodeids, nodes_missing_value_tracks_true,
                         class_treeids, class_nodeids, class_ids, weights, labels.size, 1)
    x = X.astype(np.float64).reshape(X.shape[0], -1) if X.ndim > 1 else X.astype(np.float64).reshape(1, -1)
    s, voted = _class_sums(forest, x)
    if labels.size == 2:
        binary_case = len(set(np.asarray(class_ids).tolist())) == 1
        all_positive = all(w >= 0 for w in weights)
        return _two_class(s, voted, base, post_transform, binary_case, all_positive, labels)
    if base:
        s = s + np.asarray(base, np.float64)
        voted = voted | (np.arange(labels.size) < len(base))
    top = np.argmax(np.where(voted, s, -np.inf), axis=1)
    return labels[top], post_transform_scores(np, s, post_transform).astype(np.float32)
