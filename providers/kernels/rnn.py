"""Recurrent layers: RNN, GRU and LSTM (forward, reverse, bidirectional; layout 0 and 1).

The input projection of every time step is one GEMM up front; the loop runs over time
steps only, with one recurrent GEMM per step.  With sequence_lens, steps past a batch
entry's length leave its state unchanged and write zeros to Y.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.kernels.conv import compute_dtype
from ortgpu.providers.dtype_sets import FLOATS
from ortgpu.providers.registry import kernel

# activation name -> (function of (xp, x, alpha, beta), default alpha, default beta);
# a None default means the activation takes no such parameter
_ACTIVATIONS = {
    "relu": (lambda xp, x, a, b: xp.maximum(x, 0), None, None),
    "tanh": (lambda xp, x, a, b: xp.tanh(x), None, None),
    "sigmoid": (lambda xp, x, a, b: 1 / (1 + xp.exp(-x)), None, None),
    "affine": (lambda xp, x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda xp, x, a, b: xp.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda xp, x, a, b: xp.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda xp, x, a, b: a * xp.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda xp, x, a, b: xp.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda xp, x, a, b: xp.where(x >= 0, x, a * (xp.exp(x) - 1)), 1.0, None),
    "softsign": (lambda xp, x, a, b: x / (1 + xp.abs(x)), None, None),
    "softplus": (lambda xp, x, a, b: xp.logaddexp(x, 0), None, None),
}


def make_activations(xp, names, alphas, betas):
    """Callables for the activation names, taking alpha/beta values in order as each needs them."""
    alphas, betas = list(alphas or []), list(betas or [])
    fns = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"unsupported activation '{name}'")
        f, da, db = _ACTIVATIONS[key]
        a = (alphas.pop(0) if alphas else da) if da is not None else None
        b = (betas.pop(0) if betas else db) if db is not None else None
        if key == "tanh":  # the common ones without the parameter plumbing (the same operations)
            fns.append(xp.tanh)
        elif key == "sigmoid":
            fns.append(lambda x: 1 / (1 + xp.exp(-x)))
        else:
            fns.append(lambda x, f=f, a=a, b=b: f(xp, x, a, b))
    return fns


class Recurrence:
    """The parts every recurrent op shares: layout, directions, input projection, time loop."""

    def __init__(self, ctx, gates, X, W, sequence_lens, direction, layout, hidden_size):
        self.xp = ctx.xp
        self.gates = gates
        self.dtype = X.dtype
        self.cdt = compute_dtype(X.dtype)
        x = X.astype(self.cdt, copy=False)
        self.x = x.transpose(1, 0, 2) if layout else x  # (T, B, I)
        self.layout = layout
        self.T, self.B = self.x.shape[:2]
        self.H = int(hidden_size) if hidden_size else W.shape[1] // gates
        self.num_dir = W.shape[0]
        self.directions = ["reverse"] if direction == "reverse" else (
            ["forward", "reverse"] if direction == "bidirectional" else ["forward"])
        if sequence_lens is not None:
            lens = np.asarray(sequence_lens)
            self.lens = lens.astype(np.int64)
        else:
            self.lens = None

    def initial(self, value, d):
        """The initial state of direction d as (B, H), zeros when absent."""
        if value is None:
            return self.xp.zeros((self.B, self.H), dtype=self.cdt)
        v = value.astype(self.cdt, copy=False)
        return (v[:, d] if self.layout else v[d])

    def project(self, W, B, d):
        """x @ W^T (+ Wb) for all time steps at once: (T, B, gates*H)."""
        xp = self.xp
        w = W[d].astype(self.cdt, copy=False)
        xw = xp.matmul(self.x.reshape(self.T * self.B, -1), w.T).reshape(self.T, self.B, -1)
        if B is not None:
            xw = xw + B[d, :w.shape[0]].astype(self.cdt, copy=False)
        return xw

    def run(self, direction, xw, step, state):
        """Loop step(xw_t, state) -> state over time; returns (Y (T, B, H), final state)."""
        xp = self.xp
        T, Bn = self.T, self.B
        y = xp.zeros((T, Bn, self.H), dtype=self.cdt)
        if self.lens is None:
            order = range(T - 1, -1, -1) if direction == "reverse" else range(T)
            for t in order:
                state = step(xw[t], state)
                y[t] = state[0]
            return y, state
        lens = self.lens
        bidx = np.arange(Bn)
        for t in range(T):
            valid = t < lens
            if not valid.any():
                break
            src = np.where(valid, lens - 1 - t if direction == "reverse" else t, 0)
            new = step(xw[xp.asarray(src), xp.asarray(bidx)], state)
            vmask = xp.asarray(valid)[:, None]
            state = tuple(xp.where(vmask, nv, ov) for nv, ov in zip(new, state))
            y[xp.asarray(src[valid]), xp.asarray(bidx[valid])] = new[0][xp.asarray(valid)]
        return y, state

    def outputs(self, ys, finals):
        """Y (T, D, B, H) or (B, T, D, H), and each final state as (D, B, H) or (B, D, H)."""
        xp = self.xp
        one = len(ys) == 1  # one direction: a new axis rather than a stack (a copy) of one
        y = ys[0][:, None] if one else xp.stack(ys, axis=1)
        if self.layout:
            y = y.transpose(2, 0, 1, 3)
        out = [y.astype(self.dtype, copy=False)]
        axis = 1 if self.layout else 0
        for k in range(len(finals[0])):
            if one:
                s = finals[0][k][:, None] if axis else finals[0][k][None]
            else:
                s = xp.stack([f[k] for f in finals], axis=axis)
            out.append(s.astype(self.dtype, copy=False))
        return out


def _unclipped(v):
    return v


def clipper(xp, clip):
    if clip is None:
        return _unclipped
    return lambda v: xp.clip(v, -clip, clip)


def present(ctx, values):
    """The outputs tuple, trimmed to the node's declared outputs."""
    return tuple(values[:ctx.num_outputs]) if ctx.num_outputs > 1 else values[0]


@kernel("RNN", since=(1, 7, 14, 22), types={"T": FLOATS, "T1": frozenset({"int32"})}, host_inputs=(4,))
def RNN(ctx, X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None,
        layout=0, output_sequence=0):
    """Simple RNN: h = f(x W^T + h R^T + Wb + Rb)."""
    xp = ctx.xp
    rec = Recurrence(ctx, 1, X, W, sequence_lens, direction, layout, hidden_size)
    nd = len(rec.directions)
    acts = make_activations(xp, activations or ["Tanh"] * nd, activation_alpha, activation_beta)
    cl = clipper(xp, clip)
    H = rec.H
    ys, finals = [], []
    for d, dirname in enumerate(rec.directions):
        f = acts[d] if len(acts) > d else acts[0]
        r = R[d].astype(rec.cdt, copy=False).T
        xw = rec.project(W, B, d)
        if B is not None:
            xw = xw + B[d, H:].astype(rec.cdt, copy=False)

        def step(xt, state, r=r, f=f):
            return (f(cl(xt + state[0] @ r)),)

        y, fin = rec.run(dirname, xw, step, (rec.initial(initial_h, d),))
        ys.append(y)
        finals.append(fin)
    return present(ctx, rec.outputs(ys, finals))


@kernel("GRU", since=(1, 3, 7, 14, 22), types={"T": FLOATS, "T1": frozenset({"int32"})}, host_inputs=(4,))
def GRU(ctx, X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None,
        layout=0, linear_before_reset=0, output_sequence=0):
    """GRU with gates z, r, h; linear_before_reset applies r after the recurrent GEMM."""
    xp = ctx.xp
    rec = Recurrence(ctx, 3, X, W, sequence_lens, direction, layout, hidden_size)
    nd = len(rec.directions)
    acts = make_activations(xp, activations or ["Sigmoid", "Tanh"] * nd, activation_alpha,
                            activation_beta)
    cl = clipper(xp, clip)
    H = rec.H
    ys, finals = [], []
    for d, dirname in enumerate(rec.directions):
        f, g = acts[2 * d], acts[2 * d + 1]
        r = R[d].astype(rec.cdt, copy=False)
        r_zr, r_h = r[:2 * H].T, r[2 * H:].T
        rb = (B[d, 3 * H:].astype(rec.cdt, copy=False) if B is not None
              else xp.zeros(3 * H, dtype=rec.cdt))
        rb_zr, rb_h = rb[:2 * H], rb[2 * H:]
        xw = rec.project(W, B, d)

        def step(xt, state, r_zr=r_zr, r_h=r_h, rb_zr=rb_zr, rb_h=rb_h, f=f, g=g):
            h = state[0]
            zr = f(cl(xt[:, :2 * H] + h @ r_zr + rb_zr))
            z, rr = zr[:, :H], zr[:, H:]
            if linear_before_reset:
                hh = g(cl(xt[:, 2 * H:] + rr * (h @ r_h + rb_h)))
            else:
                hh = g(cl(xt[:, 2 * H:] + (rr * h) @ r_h + rb_h))
            return ((1 - z) * hh + z * h,)

        y, fin = rec.run(dirname, xw, step, (rec.initial(initial_h, d),))
        ys.append(y)
        finals.append(fin)
    return present(ctx, rec.outputs(ys, finals))


@kernel("LSTM", since=(1, 7, 14, 22), types={"T": FLOATS, "T1": frozenset({"int32"})}, host_inputs=(4,))
def LSTM(ctx, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
         activation_alpha=None, activation_beta=None, activations=None, clip=None,
         direction="forward", hidden_size=None, input_forget=0, layout=0, output_sequence=0):
    """LSTM with gates i, o, f, c, optional peepholes (P: i, o, f) and coupled input-forget gate."""
    xp = ctx.xp
    if (xp is np and direction == "forward" and sequence_lens is None and P is None and clip is None
            and not input_forget and activations in (None, ["Sigmoid", "Tanh", "Tanh"])
            and X.dtype in (np.float32, np.float64) and W.shape[0] == 1):
        return present(ctx, _lstm_forward(ctx, X, W, R, B, initial_h, initial_c, layout, hidden_size))
    rec = Recurrence(ctx, 4, X, W, sequence_lens, direction, layout, hidden_size)
    nd = len(rec.directions)
    acts = make_activations(xp, activations or ["Sigmoid", "Tanh", "Tanh"] * nd, activation_alpha,
                            activation_beta)
    cl = clipper(xp, clip)
    H = rec.H
    ys, finals = [], []
    for d, dirname in enumerate(rec.directions):
        f, g, h_act = acts[3 * d], acts[3 * d + 1], acts[3 * d + 2]
        r = R[d].astype(rec.cdt, copy=False).T
        xw = rec.project(W, B, d)
        if B is not None:
            xw = xw + B[d, 4 * H:].astype(rec.cdt, copy=False)
        if P is not None:
            p = P[d].astype(rec.cdt, copy=False)
            pi, po, pf = p[:H], p[H:2 * H], p[2 * H:]
        else:
            pi = po = pf = None

        def step(xt, state, r=r, f=f, g=g, h_act=h_act, pi=pi, po=po, pf=pf):
            h, c = state
            gates = xt + h @ r
            if pi is None and po is None and not input_forget:
                # no peepholes: the i, o, f gates are adjacent columns, one activation call for all
                # three (a seq-1 LSTM is a few dozen small calls; this removes two of them)
                if cl is _unclipped:
                    iof = f(gates[:, :3 * H])
                    c_new = iof[:, 2 * H:] * c + iof[:, :H] * g(gates[:, 3 * H:])
                else:
                    iof = f(cl(gates[:, :3 * H]))
                    c_new = iof[:, 2 * H:] * c + iof[:, :H] * g(cl(gates[:, 3 * H:]))
                return (iof[:, H:2 * H] * h_act(c_new), c_new)
            gi, go, gf, gc = (gates[:, k * H:(k + 1) * H] for k in range(4))
            if pi is not None:
                gi = gi + pi * c
                gf = gf + pf * c
            i = f(cl(gi))
            fg = 1 - i if input_forget else f(cl(gf))
            c_new = fg * c + i * g(cl(gc))
            if po is not None:
                go = go + po * c_new
            o = f(cl(go))
            return (o * h_act(c_new), c_new)

        init = (rec.initial(initial_h, d), rec.initial(initial_c, d))
        y, fin = rec.run(dirname, xw, step, init)
        ys.append(y)
        finals.append(fin)
    return present(ctx, rec.outputs(ys, finals))


def _lstm_weights(ctx, W, R, B, h: int):
    """W^T (I, 4H), R^T (H, 4H) and Wb + Rb (4H,) or None, in W's dtype, kept for the session
    when they are constants (KernelContext.prepared)."""
    def make():
        bias = None if B is None else B[0, :4 * h].astype(W.dtype) + B[0, 4 * h:].astype(W.dtype)
        return np.ascontiguousarray(W[0].T), np.ascontiguousarray(R[0].T), bias
    return ctx.prepared(("lstm", h), (1, 2, 3), (W, R, B), make)


def _lstm_forward(ctx, X, W, R, B, initial_h, initial_c, layout, hidden_size):
    """One forward LSTM of float32/float64 NumPy arrays with the default activations and no
    peepholes, clip or sequence lengths (a streaming model's recurrent cell): the weights laid
    out once, the input projection one GEMM over all steps, one GEMM and a few in-place NumPy
    calls a step; [Y, Y_h, Y_c] in the op's layout."""
    from scipy.special import expit  # noqa: PLC0415 - the logistic sigmoid as one ufunc (scipy: a dependency)
    h_size = int(hidden_size) if hidden_size else W.shape[1] // 4
    wt, rt, bias = _lstm_weights(ctx, W, R.astype(W.dtype, copy=False), B, h_size)
    x = (X.transpose(1, 0, 2) if layout else X).astype(wt.dtype, copy=False)   # (T, B, I)
    steps, batch = x.shape[:2]
    xw = np.matmul(x.reshape(steps * batch, -1), wt).reshape(steps, batch, 4 * h_size)
    if bias is not None:
        xw += bias

    def initial(v):
        if v is None:
            return np.zeros((batch, h_size), wt.dtype)
        return (v[:, 0] if layout else v[0]).astype(wt.dtype, copy=False)
    hs, cs = initial(initial_h), initial(initial_c)
    y = np.empty((steps, batch, h_size), wt.dtype)
    three = 3 * h_size
    for t in range(steps):
        gates = np.matmul(hs, rt)
        gates += xw[t]
        iof = expit(gates[:, :three])   # i, o, f side by side: one call
        cs = iof[:, 2 * h_size:] * cs + iof[:, :h_size] * np.tanh(gates[:, three:])
        hs = iof[:, h_size:2 * h_size] * np.tanh(cs)
        y[t] = hs
    dt = X.dtype
    if layout:
        return [y.transpose(1, 0, 2)[:, :, None].astype(dt, copy=False), hs[:, None].astype(dt, copy=False),
                cs[:, None].astype(dt, copy=False)]
    return [y[:, None].astype(dt, copy=False), hs[None].astype(dt, copy=False), cs[None].astype(dt, copy=False)]
