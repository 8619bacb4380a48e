"""AttnLSTM of onnxruntime's com.microsoft domain: one LSTM layer whose cell is wrapped by a
Bahdanau attention over a memory (TensorFlow's AttentionWrapper around an LSTMCell).

Per step t (gates i, o, f, c and peepholes as ai.onnx LSTM):
    H_t, C_t = lstm(concat(X_t, ATTN_{t-1}), H_{t-1}, C_{t-1})
    score_t = V . tanh(M MW + H_t QW) over the memory steps (those past memory_seq_lens left out)
    CONTEXT_t = softmax(score_t) @ M;  ATTN_t = concat(H_t, CONTEXT_t) AW  (or CONTEXT_t without AW)
with ATTN_0 = 0.  Y holds H_t; steps past a row's sequence_lens keep its state and write zeros.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.base import host_array
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels.rnn import clipper, make_activations
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"

declare_formals(MS, "AttnLSTM", ("T", "T", "T", "T", "T1", "T", "T", "T", "T", "T", "T", "T", "T1", "T"),
                ("T", "T", "T"))


def _attention(xp, keys, values, valid, v, qw, aw, h):
    """(ATTN_t) for hidden state h (B, H): Bahdanau scores over the memory, context, layer."""
    score = xp.tanh(keys + (h @ qw)[:, None, :]) @ v                # (B, Tm)
    score = xp.where(valid, score, -np.inf)
    score = score - score.max(axis=1, keepdims=True)
    e = xp.where(valid, xp.exp(score), 0)
    align = e / e.sum(axis=1, keepdims=True)
    context = (align[:, :, None] * values).sum(axis=1)               # (B, depth)
    return context if aw is None else xp.concatenate([h, context], axis=1) @ aw


@kernel("AttnLSTM", since=1, domain=MS, types={"T": frozenset({"float32", "float64"}), "T1": frozenset({"int32"})},
        host_inputs=(4, 12), capturable=False)
def AttnLSTM(ctx, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, QW=None, MW=None,
             V=None, M=None, memory_seq_lens=None, AW=None, *, activation_alpha=None, activation_beta=None,
             activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0):
    """LSTM over X (T, B, I) attending to memory M (B, Tm, depth) at every step."""
    xp = ctx.xp
    if QW is None or MW is None or V is None or M is None:
        raise ValueError("AttnLSTM: inputs QW, MW, V and M (the attention mechanism) are required")
    dt = np.float64 if X.dtype == np.float64 else np.float32
    x = X.astype(dt)
    steps, batch, _ = x.shape
    hid = int(hidden_size) if hidden_size else R.shape[-1]
    dirs = ["reverse"] if direction == "reverse" else (
        ["forward", "reverse"] if direction == "bidirectional" else ["forward"])
    acts = make_activations(xp, activations or ["Sigmoid", "Tanh", "Tanh"] * len(dirs), activation_alpha,
                            activation_beta)
    cl = clipper(xp, clip)
    lens = np.full(batch, steps) if sequence_lens is None else host_array(sequence_lens).astype(np.int64)
    mem = M.astype(dt)
    mlen = np.full(batch, mem.shape[1]) if memory_seq_lens is None else host_array(memory_seq_lens).astype(np.int64)
    valid = xp.asarray(np.arange(mem.shape[1])[None, :] < mlen[:, None])
    values = xp.where(valid[:, :, None], mem, 0)
    ys, hs, cs = [], [], []
    for d, name in enumerate(dirs):
        f, g, h_act = acts[3 * d:3 * d + 3]
        w, r = W[d].astype(dt), R[d].astype(dt)
        bias = 0 if B is None else B[d, :4 * hid].astype(dt) + B[d, 4 * hid:].astype(dt)
        pi, po, pf = (None, None, None) if P is None else (P[d, :hid].astype(dt), P[d, hid:2 * hid].astype(dt),
                                                           P[d, 2 * hid:].astype(dt))
        keys = values @ MW[d].astype(dt)
        qw, v = QW[d].astype(dt), V[d].astype(dt)
        aw = None if AW is None else AW[d].astype(dt)
        h = xp.zeros((batch, hid), dt) if initial_h is None else initial_h[d].astype(dt)
        c = xp.zeros((batch, hid), dt) if initial_c is None else initial_c[d].astype(dt)
        attn = xp.zeros((batch, mem.shape[2] if aw is None else aw.shape[1]), dt)
        y = xp.zeros((steps, batch, hid), dt)
        for k in range(steps):
            live = k < lens
            if not live.any():
                break
            t = np.where(live, lens - 1 - k if name == "reverse" else k, 0)
            xt = x[xp.asarray(t), xp.arange(batch)]
            gates = xp.concatenate([xt, attn], axis=1) @ w.T + h @ r.T + bias
            gi, go, gf, gc = (gates[:, j * hid:(j + 1) * hid] for j in range(4))
            if pi is not None:
                gi, gf = gi + pi * c, gf + pf * c
            i = f(cl(gi))
            fg = 1 - i if input_forget else f(cl(gf))
            c_new = fg * c + i * g(cl(gc))
            if po is not None:
                go = go + po * c_new
            h_new = f(cl(go)) * h_act(c_new)
            attn_new = _attention(xp, keys, values, valid, v, qw, aw, h_new)
            keep = xp.asarray(live)[:, None]
            h, c, attn = (xp.where(keep, new, old) for new, old in ((h_new, h), (c_new, c), (attn_new, attn)))
            y[xp.asarray(t[live]), xp.asarray(np.nonzero(live)[0])] = h_new[xp.asarray(live)]
        ys.append(y)
        hs.append(h)
        cs.append(c)
    outs = [xp.stack(ys, axis=1).astype(X.dtype), xp.stack(hs).astype(X.dtype), xp.stack(cs).astype(X.dtype)]
    return tuple(outs[:ctx.num_outputs]) if ctx.num_outputs > 1 else outs[0]
