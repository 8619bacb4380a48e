"""AttnLSTM against onnxruntime's CPU provider: directions, sequence and memory lengths,
optional bias / peepholes / initial states / attention layer, clip, coupled gates, float64."""
import numpy as np
import pytest

from support.harness import F32, F64, I32, Case, node, pick, rnd, run_family


def gen_attn_lstm(rng):
    steps, batch, inp, hid = (int(v) for v in (rng.integers(1, 5), rng.integers(1, 4), rng.integers(1, 5),
                                                rng.integers(1, 5)))
    mem_steps, depth, att = int(rng.integers(1, 6)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
    direction = pick(rng, ["forward", "reverse", "bidirectional"])
    dirs = 2 if direction == "bidirectional" else 1
    dt = pick(rng, [F32, F32, F64])
    use_aw = rng.random() < 0.5
    aw_size = int(rng.integers(1, 5))
    attn_depth = aw_size if use_aw else depth

    def r(*shape):
        return rnd(rng, list(shape), dt, 0.5)

    feeds = {"X": r(steps, batch, inp), "W": r(dirs, 4 * hid, inp + attn_depth), "R": r(dirs, 4 * hid, hid)}
    opt = {}
    if rng.random() < 0.7:
        opt["B"] = r(dirs, 8 * hid)
    if rng.random() < 0.5:
        opt["sequence_lens"] = rng.integers(1, steps + 1, size=batch).astype(I32)
    if rng.random() < 0.5:
        opt["initial_h"] = r(dirs, batch, hid)
    if rng.random() < 0.5:
        opt["initial_c"] = r(dirs, batch, hid)
    if rng.random() < 0.4:
        opt["P"] = r(dirs, 3 * hid)
    opt.update(QW=r(dirs, hid, att), MW=r(dirs, depth, att), V=r(dirs, att), M=r(batch, mem_steps, depth))
    if rng.random() < 0.6:
        opt["memory_seq_lens"] = rng.integers(1, mem_steps + 1, size=batch).astype(I32)
    if use_aw:
        opt["AW"] = r(dirs, depth + hid, aw_size)
    order = ["B", "sequence_lens", "initial_h", "initial_c", "P", "QW", "MW", "V", "M", "memory_seq_lens", "AW"]
    inputs = ["X", "W", "R"] + [k if k in opt else "" for k in order]
    while inputs[-1] == "":
        inputs.pop()
    feeds.update(opt)
    attrs = dict(hidden_size=hid, direction=direction)
    if rng.random() < 0.3:
        attrs["clip"] = float(rng.uniform(0.5, 2.0))
    if rng.random() < 0.2:
        attrs["input_forget"] = 1
    outputs = ["Y", "Y_h", "Y_c"][:int(rng.integers(1, 4))]
    return Case(node("AttnLSTM", inputs, outputs, **attrs), feeds, rtol=1e-4, atol=1e-5)


FAMILIES = {"AttnLSTM": gen_attn_lstm}


@pytest.mark.parametrize("name", FAMILIES)
def test_matches_onnxruntime(name):
    run_family(FAMILIES[name], name, count=30, minimum=15)
