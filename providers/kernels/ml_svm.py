"""Support vector machines of the ai.onnx.ml domain: SVMClassifier and SVMRegressor.

Two encodings: with support vectors (libsvm, one-vs-one classifiers with a vote, optional Platt
probabilities coupled by Wu-Lin-Weng's method) or without (liblinear: one coefficient row per
class).  The label and score layout follows onnxruntime's, binary quirks included, so that a
converted scikit-learn model gives the same outputs on both runtimes.
"""
import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.dtype_sets import STRING
from ortgpu.providers.kernels.ml import ML, post_transform_scores
from ortgpu.providers.kernels.ml_linear import class_labels, rows_float32
from ortgpu.providers.registry import kernel

_INPUTS = frozenset({"float32", "float64", "int32", "int64"})


def kernel_matrix(x, vectors, kernel_type, kernel_params, bias=0.0):
    """K[n, v] = k(x_n, vectors_v) for LINEAR (+ bias), POLY, RBF or SIGMOID, in float32."""
    gamma, coef0, degree = (list(kernel_params) + [0.0, 0.0, 0.0])[:3] if kernel_params is not None \
        and len(kernel_params) else (0.0, 0.0, 0.0)
    if kernel_type == "RBF":
        d = ((x[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=-1)
        return np.exp(-np.float32(gamma) * d).astype(np.float32)
    if kernel_type == "LINEAR":
        return (x @ vectors.T + np.float32(bias)).astype(np.float32)
    k = np.float32(gamma) * (x @ vectors.T) + np.float32(coef0)
    if kernel_type == "POLY":
        return (k ** np.float32(degree)).astype(np.float32)
    if kernel_type == "SIGMOID":
        return np.tanh(k).astype(np.float32)
    raise InvalidArgument(f"SVM kernel_type must be LINEAR, POLY, RBF or SIGMOID, got {kernel_type!r}")


def _pairwise_scores(K, coef, rho, per_class):
    """One-vs-one decision values [N, pairs] and votes [N, classes] from the kernel values."""
    n_classes = len(per_class)
    start = np.concatenate([[0], np.cumsum(per_class)]).astype(int)
    scores, votes = [], np.zeros((K.shape[0], n_classes), np.int64)
    k = 0
    for i in range(n_classes - 1):
        si, ei = start[i], start[i + 1]
        for j in range(i + 1, n_classes):
            sj, ej = start[j], start[j + 1]
            s = (K[:, si:ei].astype(np.float64) @ coef[j - 1, si:ei] +
                 K[:, sj:ej].astype(np.float64) @ coef[i, sj:ej] + rho[k])
            votes[:, i] += s > 0
            votes[:, j] += s <= 0
            scores.append(s)
            k += 1
    return np.stack(scores, axis=1).astype(np.float32), votes


def _coupled_probabilities(r):
    """Class probabilities from the pairwise ones r[i, j] (P(i | i or j)), by the iterative
    method of Wu, Lin and Weng (2004) that libsvm uses."""
    c = r.shape[0]
    Q = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            if j != i:
                Q[i, i] += r[j, i] ** 2
                Q[i, j] = -r[j, i] * r[i, j]
    p = np.full(c, 1.0 / c)
    eps = 0.005 / c
    for _ in range(100):
        Qp = Q @ p
        pQp = p @ Qp
        if np.max(np.abs(Qp - pQp)) < eps:
            break
        for i in range(c):
            diff = (-Qp[i] + pQp) / Q[i, i]
            p[i] += diff
            pQp = (pQp + diff * (diff * Q[i, i] + 2 * Qp[i])) / (1 + diff) / (1 + diff)
            Qp = (Qp + diff * Q[i, :]) / (1 + diff)
            p /= 1 + diff
    return p


def _probabilities(scores, prob_a, prob_b, n_classes):
    """Platt-scaled pairwise probabilities coupled into class probabilities, per row."""
    a, b = np.asarray(prob_a, np.float64), np.asarray(prob_b, np.float64)
    out = np.empty((scores.shape[0], n_classes), np.float32)
    for n in range(scores.shape[0]):
        r = np.zeros((n_classes, n_classes))
        k = 0
        for i in range(n_classes - 1):
            for j in range(i + 1, n_classes):
                v = 1.0 / (1.0 + np.exp(scores[n, k] * a[k] + b[k]))  # 1 - logistic(a*s + b)
                v = min(max(v, 1e-7), 1 - 1e-7)
                r[i, j], r[j, i] = v, 1 - v
                k += 1
        out[n] = _coupled_probabilities(r)
    return out


@kernel("SVMClassifier", since=1, domain=ML, provider="cpu",
        types={"T1": _INPUTS, "T2": STRING | frozenset({"int64"})}, capturable=False)
def SVMClassifier(ctx, X, *, classlabels_ints=None, classlabels_strings=None, coefficients=None,
                  kernel_params=None, kernel_type="LINEAR", post_transform="NONE", prob_a=None,
                  prob_b=None, rho=None, support_vectors=None, vectors_per_class=None):
    """Top class label per row and the scores (pairwise decision values, or probabilities)."""
    x = rows_float32(X, "SVMClassifier")
    labels, _ = class_labels("SVMClassifier", classlabels_strings, classlabels_ints)
    n_classes = labels.size
    coef = np.asarray(coefficients if coefficients is not None else (), np.float32)
    rho = np.asarray(rho if rho is not None else (), np.float32)
    if coef.size == 0 or rho.size == 0:
        raise InvalidArgument("SVMClassifier needs the coefficients and rho attributes")
    have_proba = prob_a is not None and len(prob_a) > 0
    per_class = list(vectors_per_class or ())
    n_vectors = int(sum(per_class))
    post = post_transform
    if n_vectors:
        if len(per_class) != n_classes:
            raise InvalidArgument(f"SVMClassifier: vectors_per_class has {len(per_class)} entries for "
                             f"{n_classes} class labels")
        sv = np.asarray(support_vectors, np.float32).reshape(n_vectors, -1)
        if sv.shape[1] != x.shape[1]:
            raise InvalidArgument(f"SVMClassifier: input X has {x.shape[1]} features, the support vectors "
                             f"{sv.shape[1]}")
        K = kernel_matrix(x, sv, kernel_type, kernel_params)
        scores, votes = _pairwise_scores(K, coef.reshape(n_classes - 1, n_vectors), rho, per_class)
        y = labels[np.argmax(votes, axis=1)]
        if have_proba:
            z = _probabilities(scores, prob_a, prob_b, n_classes)
            return y, post_transform_scores(np, z, post).astype(np.float32)
        if n_classes > 2:
            return y, post_transform_scores(np, scores, post).astype(np.float32)
        s = scores[:, 0]
        if post in ("PROBIT", 4):
            z = np.zeros((s.size, 2), np.float32)
            z[:, 0] = post_transform_scores(np, s.reshape(-1, 1), post).reshape(-1)
        elif post in ("NONE", 0):
            z = np.stack([-s, s], axis=1)
        else:  # [1 - p, p], p the logistic of s under LOGISTIC, else s itself
            p = 1 / (1 + np.exp(-s)) if post in ("LOGISTIC", 2) else s
            z = np.stack([1 - p, p], axis=1)
        return y, z.astype(np.float32)
    scores = kernel_matrix(x, coef.reshape(n_classes, -1), "LINEAR", None, bias=rho[0])
    top = np.argmax(scores, axis=1)
    y = labels[top]
    if n_classes == 2 and not have_proba:
        best = scores[np.arange(scores.shape[0]), top]
        if (coef >= 0).all():
            y = np.where(best >= 0.5, labels[1], y).astype(labels.dtype)
        else:
            y = np.where(best > 0, labels[1], y).astype(labels.dtype)
    return y, post_transform_scores(np, scores, post).astype(np.float32)


@kernel("SVMRegressor", since=1, domain=ML, provider="cpu", types={"T": frozenset({"float32"})})
def SVMRegressor(ctx, X, *, coefficients=None, kernel_params=None, kernel_type="LINEAR", n_supports=0,
                 one_class=0, post_transform="NONE", rho=None, support_vectors=None):
    """Sum of coefficient-weighted kernel values plus rho[0], [N, 1] float32; one_class gives +-1.
    (onnxruntime ignores post_transform here; so do we.)"""
    x = rows_float32(X, "SVMRegressor")
    coef = np.asarray(coefficients if coefficients is not None else (), np.float32)
    rho = np.asarray(rho if rho is not None else (0.0,), np.float32)
    if n_supports:
        sv = np.asarray(support_vectors, np.float32).reshape(n_supports, -1)
        if sv.shape[1] != x.shape[1]:
            raise InvalidArgument(f"SVMRegressor: input X has {x.shape[1]} features, the support vectors "
                             f"{sv.shape[1]}")
        y = kernel_matrix(x, sv, kernel_type, kernel_params) @ coef.reshape(-1, 1) + rho[0]
    else:
        if coef.size != x.shape[1]:
            raise InvalidArgument(f"SVMRegressor: input X has {x.shape[1]} features, coefficients {coef.size}")
        y = x @ coef.reshape(-1, 1) + rho[0]
    if one_class:
        y = np.where(y > 0, 1.0, -1.0)
    return y.astype(np.float32)
