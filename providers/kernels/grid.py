"""GridSample and AffineGrid: sampling an N-D tensor at normalized grid coordinates."""
import numpy as np

from ortgpu.providers.dtype_sets import BFLOAT16, CUPY, FLOATS
from ortgpu.providers.registry import kernel


def _work_dtype(dt):
    return np.float64 if dt == np.float64 else np.float32


def _reflect(xp, v, lo, hi):
    """Fold coordinates v back into [lo, hi] by mirroring at the borders (repeatedly)."""
    span = hi - lo
    if span <= 0:
        return xp.full_like(v, lo)
    below, above = v < lo, v > hi
    dist = xp.where(below, lo - v, xp.where(above, v - hi, 0))
    flips = xp.floor(dist / span)
    rem = dist - flips * span
    even = (flips % 2) == 0
    from_lo = xp.where(even, lo + rem, hi - rem)   # reflected starting at the low border
    from_hi = xp.where(even, hi - rem, lo + rem)
    return xp.where(below, from_lo, xp.where(above, from_hi, v))


def _cubic_weights(xp, t, a=-0.75):
    """Keys cubic weights of the 4 taps at offsets -1, 0, 1, 2 for fractional position t."""
    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


@kernel("GridSample", since=(16, 20, 22), types={"T1": CUPY | BFLOAT16, "T2": FLOATS})
def GridSample(ctx, X, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    """Sample X (N, C, D1..Dr) at grid (N, O1..Ok, r), whose last axis lists x (innermost) first."""
    xp = ctx.xp
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    if mode not in ("nearest", "linear", "cubic"):
        raise ValueError(f"GridSample: unknown mode '{mode}'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"GridSample: unknown padding_mode '{padding_mode}'")
    N, C = X.shape[:2]
    dims = X.shape[2:]
    r = len(dims)
    if grid.shape[-1] != r or grid.shape[0] != N:
        raise ValueError(f"GridSample: grid shape {grid.shape} does not fit input shape {X.shape}")
    out_sp = grid.shape[1:-1]
    wdt = _work_dtype(X.dtype)
    if N * C * int(np.prod(out_sp, dtype=np.int64)) == 0:
        return xp.zeros((N, C) + tuple(out_sp), dtype=X.dtype)
    g = grid.astype(wdt).reshape(N, -1, r)  # (N, M, r)

    taps_per_dim = []  # per spatial dim of X: list of (index, weight) over the taps
    for i, L in enumerate(dims):
        n = g[:, :, r - 1 - i]
        x = (n + 1) / 2 * (L - 1) if align_corners else ((n + 1) * L - 1) / 2
        lo, hi = (0.0, L - 1.0) if align_corners else (-0.5, L - 0.5)
        if mode == "nearest":
            x = xp.rint(x)
        # Nearest and linear fold the coordinate itself into range; cubic (as in PyTorch and
        # onnxruntime) keeps it and lets padding act on each of its four taps instead.
        if padding_mode == "border" and mode != "cubic":
            x = xp.clip(x, 0, L - 1)
        elif padding_mode == "reflection" and mode != "cubic":
            x = _reflect(xp, x, lo, hi)
        if mode == "nearest":
            taps = [(x.astype(np.int64), None)]
        else:
            base = xp.floor(x)
            t = x - base
            base = base.astype(np.int64)
            if mode == "linear":
                taps = [(base, 1 - t), (base + 1, t)]
            else:
                taps = [(base + k - 1, w) for k, w in enumerate(_cubic_weights(xp, t))]
        fixed = []
        for idx, w in taps:  # where each tap reads: padding decides what lies outside the input
            if padding_mode == "zeros":
                inside = (idx >= 0) & (idx < L)
                w = inside.astype(wdt) if w is None else w * inside
                idx = xp.clip(idx, 0, L - 1)
            elif padding_mode == "border":
                idx = xp.clip(idx, 0, L - 1)
            else:
                idx = xp.clip(_reflect(xp, idx.astype(wdt), lo, hi).astype(np.int64), 0, L - 1)
            fixed.append((idx, w))
        taps_per_dim.append(fixed)

    # Combine the per-dim taps into flat input offsets and product weights: (N, M, T).
    flat_idx, flat_w = None, None
    for i, taps in enumerate(taps_per_dim):
        stride = int(np.prod(dims[i + 1:], dtype=np.int64))
        idx = xp.stack([t[0] * stride for t in taps], axis=-1)
        w = None if taps[0][1] is None else xp.stack([t[1] for t in taps], axis=-1)
        if flat_idx is None:
            flat_idx, flat_w = idx, w
        else:
            flat_idx = (flat_idx[..., :, None] + idx[..., None, :]).reshape(N, idx.shape[1], -1)
            if w is not None or flat_w is not None:
                a = flat_w if flat_w is not None else xp.ones(flat_idx.shape[:2] + (1,), wdt)
                b = w if w is not None else xp.ones(idx.shape, wdt)
                flat_w = (a[..., :, None] * b[..., None, :]).reshape(N, idx.shape[1], -1)
    M, T = flat_idx.shape[1], flat_idx.shape[2]
    src = X.reshape(N, C, -1)
    if src.dtype != wdt and mode != "nearest":
        src = src.astype(wdt)
    where = xp.broadcast_to(flat_idx.reshape(N, 1, M * T), (N, C, M * T))
    gathered = xp.take_along_axis(src, where, axis=2).reshape(N, C, M, T)
    if flat_w is None:
        out = gathered[..., 0]
    else:
        out = (gathered * flat_w[:, None].astype(gathered.dtype)).sum(axis=-1)
    return out.reshape((N, C) + tuple(out_sp)).astype(X.dtype)


@kernel("AffineGrid", since=20, types={"T1": FLOATS, "T2": frozenset({"int64"})}, host_inputs=(1,))
def AffineGrid(ctx, theta, size, *, align_corners=0):
    """Grid (N, [D,] H, W, r) of theta applied to normalized output coordinates (x innermost)."""
    xp = ctx.xp
    shape = [int(s) for s in np.asarray(size).reshape(-1)]
    N, sp = shape[0], shape[2:]
    r = len(sp)
    if theta.shape != (N, r, r + 1):
        raise ValueError(f"AffineGrid: theta shape {theta.shape} does not fit size {shape}")
    wdt = _work_dtype(theta.dtype)
    axes = []
    for L in sp:
        k = xp.arange(L, dtype=wdt)
        if align_corners:
            axes.append(k * (2.0 / (L - 1)) - 1 if L > 1 else xp.full((1,), -1.0, wdt))
        else:
            axes.append((2 * k + 1) / L - 1)
    mesh = xp.meshgrid(*axes, indexing="ij")                         # per dim, shape sp
    homo = xp.stack([m.reshape(-1) for m in mesh[::-1]] + [xp.ones(int(np.prod(sp)), wdt)])  # (r+1, P)
    out = xp.matmul(theta.astype(wdt), homo)                          # (N, r, P)
    return xp.moveaxis(out, 1, 2).reshape([N] + sp + [r]).astype(theta.dtype)
