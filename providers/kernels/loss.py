"""Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Both take class scores of shape (N, C, d1, ..., dk) and integer targets of shape
(N, d1, ..., dk); targets equal to ``ignore_index`` contribute nothing, neither to the
loss nor to the weight total that the "mean" reduction divides by.
"""
from __future__ import annotations

from ortgpu.providers.dtype_sets import FLOATS, INDEX
from ortgpu.providers.kernels.normalization import log_softmax
from ortgpu.providers.kernels.reduce import float_work_dtype
from ortgpu.providers.registry import kernel


def _nll(xp, logp, target, weight, ignore_index, reduction):
    """Weighted negative log-likelihood of `logp` (N, C, ...) at `target` (N, ...)."""
    tgt = target.astype("int64", copy=False)
    keep = None if ignore_index is None else (tgt != ignore_index)
    idx = tgt if keep is None else xp.where(keep, tgt, xp.zeros_like(tgt))
    picked = xp.squeeze(xp.take_along_axis(logp, xp.expand_dims(idx, 1), axis=1), 1)
    w = (xp.ones_like(picked) if weight is None else weight.astype(logp.dtype)[idx])
    if keep is not None:
        w = xp.where(keep, w, xp.zeros_like(w))
    loss = -picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return xp.sum(loss)
    if reduction == "mean":
        return xp.sum(loss) / xp.sum(w)
    raise ValueError(f"unknown reduction '{reduction}' (expected none, sum or mean)")


def _reduction(reduction):
    return reduction.decode() if isinstance(reduction, bytes) else reduction


@kernel("NegativeLogLikelihoodLoss", since=(12, 13, 22), types={"T": FLOATS, "Tind": INDEX})
def NegativeLogLikelihoodLoss(ctx, input, target, weight=None, *, ignore_index=None, reduction="mean"):
    """loss = -input[n, target[n, ...], ...] * weight[target], reduced by none / sum / weighted mean."""
    xp = ctx.xp
    wdt = float_work_dtype(input.dtype)
    loss = _nll(xp, input.astype(wdt, copy=False), target, weight, ignore_index, _reduction(reduction))
    return xp.asarray(loss).astype(input.dtype, copy=False)


@kernel("SoftmaxCrossEntropyLoss", since=(12, 13), types={"T": FLOATS, "Tind": INDEX})
def SoftmaxCrossEntropyLoss(ctx, scores, labels, weights=None, *, ignore_index=None, reduction="mean"):
    """NLL of log_softmax(scores) over axis 1; the optional second output is that log_softmax."""
    xp = ctx.xp
    wdt = float_work_dtype(scores.dtype)
    logp = log_softmax(xp, scores.astype(wdt, copy=False), (1,))
    loss = xp.asarray(_nll(xp, logp, labels, weights, ignore_index, _reduction(reduction)))
    loss = loss.astype(scores.dtype, copy=False)
    if ctx.num_outputs == 1:
        return loss
    return loss, logp.astype(scores.dtype, copy=False)
