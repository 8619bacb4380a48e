"""Contrib normalizations against onnxruntime's CPU provider (GroupNorm and SkipGroupNorm, which
onnxruntime has on CUDA only, against Transpose + GroupNormalization-21 + SiLU in ai.onnx ops)."""
import numpy as np
import pytest
from onnx import TensorProto

from support.harness import F16, F32, F64, I32, Case, node, onnx_node, pick, rnd, run_family


def _bsh(rng):
    return int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(pick(rng, [4, 8, 16, 24, 32]))


def _stat_outputs(rng, n_extra):
    """Which optional outputs a node asks for ('' = absent), at least the first."""
    return [o if rng.random() < 0.5 else "" for o in n_extra]


def gen_skip_layer_norm(rng, simplified=False):
    b, s, h = _bsh(rng)
    dt = pick(rng, [F32, F32, F16, F64])
    x = rnd(rng, [b, s, h], dt, 2.0)
    skip_shape = pick(rng, [[b, s, h], [b, s, h], [1, s, h], [s, h]])
    feeds = {"input": x, "skip": rnd(rng, skip_shape, dt)}
    consts = {"gamma": rnd(rng, [h], dt)}
    inputs = ["input", "skip", "gamma"]
    if not simplified:
        if rng.random() < 0.7:
            consts["beta"] = rnd(rng, [h], dt)
            inputs.append("beta")
        else:
            inputs.append("")
    if rng.random() < 0.5:
        consts["bias"] = rnd(rng, [h], dt)
        inputs.append("bias")
    outputs = ["Y"] + _stat_outputs(rng, ["mean", "inv_std"]) + (["sum"] if rng.random() < 0.6 else [])
    while outputs[-1] == "":
        outputs.pop()
    eps = None if rng.random() < 0.5 else float(pick(rng, [1e-5, 1e-6, 1e-3]))
    op = "SkipSimplifiedLayerNormalization" if simplified else "SkipLayerNormalization"
    out_types = {"mean": TensorProto.FLOAT, "inv_std": TensorProto.FLOAT}
    return Case(node(op, inputs, outputs, epsilon=eps), feeds, consts, out_types=out_types,
                rtol=2e-3 if dt == F16 else None)


def gen_simplified_layer_norm(rng):
    shape = [int(d) for d in rng.integers(1, 5, size=int(rng.integers(2, 4)))] + [int(rng.integers(2, 20))]
    dt = pick(rng, [F32, F32, F16, F64])
    axis = int(rng.integers(-2, 0))
    scale_shape = shape[axis:] if axis == -2 else shape[-1:]
    feeds = {"X": rnd(rng, shape, dt, 3.0)}
    consts = {"scale": rnd(rng, scale_shape, dt)}
    outputs = ["Y"] + (["inv"] if rng.random() < 0.5 else [])
    stash = None if rng.random() < 0.7 else 1
    return Case(onnx_node("SimplifiedLayerNormalization", ["X", "scale"], outputs, axis=axis,
                          epsilon=float(pick(rng, [1e-5, 1e-6])), stash_type=stash),
                feeds, consts, out_types={"inv": TensorProto.FLOAT}, opset=int(rng.integers(13, 18)))


def gen_layer_norm_1(rng):
    shape = [int(d) for d in rng.integers(1, 5, size=int(rng.integers(2, 4)))] + [int(rng.integers(2, 20))]
    dt = pick(rng, [F32, F32, F64])
    feeds = {"X": rnd(rng, shape, dt, 3.0)}
    consts = {"scale": rnd(rng, shape[-1:], dt), "B": rnd(rng, shape[-1:], dt)}
    outputs = ["Y"] + (["mean", "inv"] if rng.random() < 0.4 else [])
    return Case(onnx_node("LayerNormalization", ["X", "scale", "B"], outputs, axis=-1,
                          epsilon=float(pick(rng, [1e-5, 1e-12]))),
                feeds, consts, out_types={"mean": TensorProto.FLOAT, "inv": TensorProto.FLOAT},
                opset=int(rng.integers(11, 17)))


def gen_embed_layer_norm(rng):
    b, s, h = _bsh(rng)
    vocab, max_pos, n_seg = int(rng.integers(5, 40)), s + int(rng.integers(0, 5)), int(rng.integers(2, 4))
    feeds = {"input_ids": rng.integers(0, vocab, size=(b, s)).astype(I32)}
    with_segment = rng.random() < 0.7
    feeds["segment_ids"] = rng.integers(0, n_seg, size=(b, s)).astype(I32)
    consts = {"word": rnd(rng, [vocab, h]), "pos": rnd(rng, [max_pos, h]), "seg": rnd(rng, [n_seg, h]),
              "gamma": rnd(rng, [h]), "beta": rnd(rng, [h])}
    inputs = ["input_ids", "segment_ids" if with_segment else "", "word", "pos",
              "seg" if with_segment else "", "gamma", "beta"]
    if not with_segment:
        del feeds["segment_ids"]
    if rng.random() < 0.6:
        lens = rng.integers(1, s + 1, size=b)
        feeds["mask"] = (np.arange(s)[None] < lens[:, None]).astype(I32)
        inputs.append("mask")
    if rng.random() < 0.3:
        inputs += [""] if len(inputs) == 7 else []
        feeds["position_ids"] = rng.integers(0, max_pos, size=(b, s)).astype(I32)
        inputs.append("position_ids")
    outputs = ["Y", "mask_index"] + (["sum"] if rng.random() < 0.5 else [])
    return Case(node("EmbedLayerNormalization", inputs, outputs, epsilon=float(pick(rng, [1e-12, 1e-5]))),
                feeds, consts, out_types={"Y": TensorProto.FLOAT, "mask_index": TensorProto.INT32,
                                           "sum": TensorProto.FLOAT})


def _group_norm_oracle(c, groups, activation, x="X", out="Y", eps=1e-5):
    nodes = [onnx_node("Transpose", [x], ["xt"], perm=[0, 3, 1, 2]),
             onnx_node("GroupNormalization", ["xt", "gamma", "beta"], ["gn"], num_groups=groups, epsilon=eps),
             onnx_node("Transpose", ["gn"], ["gt" if activation else out], perm=[0, 2, 3, 1])]
    if activation:
        nodes += [onnx_node("Sigmoid", ["gt"], ["sg"]), onnx_node("Mul", ["gt", "sg"], [out])]
    return nodes


def gen_group_norm(rng):
    groups = int(pick(rng, [1, 2, 4, 8]))
    c = groups * int(rng.integers(1, 5))
    n, hh, ww = (int(v) for v in rng.integers(1, 5, size=3))
    activation = int(rng.integers(0, 2))
    eps = float(pick(rng, [1e-5, 1e-6]))
    feeds = {"X": rnd(rng, [n, hh, ww, c], F32, 2.0)}
    consts = {"gamma": rnd(rng, [c]), "beta": rnd(rng, [c])}
    return Case(node("GroupNorm", ["X", "gamma", "beta"], ["Y"], activation=activation, groups=groups,
                     epsilon=eps, channels_last=1), feeds, consts,
                oracle=_group_norm_oracle(c, groups, activation, eps=eps), opset=21)


def gen_skip_group_norm(rng):
    groups = int(pick(rng, [1, 2, 4]))
    c = groups * int(rng.integers(1, 5))
    n, hh, ww = (int(v) for v in rng.integers(1, 5, size=3))
    activation = int(rng.integers(0, 2))
    skip_shape = pick(rng, [[n, hh, ww, c], [n, 1, 1, c], [n, c]])
    feeds = {"X": rnd(rng, [n, hh, ww, c], F32, 2.0), "skip": rnd(rng, skip_shape)}
    consts = {"gamma": rnd(rng, [c]), "beta": rnd(rng, [c])}
    inputs = ["X", "gamma", "beta", "skip"]
    oracle = [onnx_node("Reshape", ["skip", "skip_shape"], ["skip4"])]
    consts["skip_shape"] = np.array([n, 1 if len(skip_shape) == 2 else skip_shape[1],
                                     1 if len(skip_shape) == 2 else skip_shape[2], c], np.int64)
    if rng.random() < 0.5:
        consts["bias"] = rnd(rng, [c])
        inputs.append("bias")
        oracle += [onnx_node("Add", ["X", "bias"], ["xb"]), onnx_node("Add", ["xb", "skip4"], ["S"])]
    else:
        oracle += [onnx_node("Add", ["X", "skip4"], ["S"])]
    oracle += _group_norm_oracle(c, groups, activation, x="S")
    return Case(node("SkipGroupNorm", inputs, ["Y", "S"], activation=activation, groups=groups,
                     channels_last=1), feeds, consts, oracle=oracle, opset=21)


FAMILIES = {
    "SkipLayerNormalization": gen_skip_layer_norm,
    "SkipSimplifiedLayerNormalization": lambda rng: gen_skip_layer_norm(rng, simplified=True),
    "SimplifiedLayerNormalization": gen_simplified_layer_norm,
    "LayerNormalization-1": gen_layer_norm_1,
    "EmbedLayerNormalization": gen_embed_layer_norm,
    "GroupNorm": gen_group_norm,
    "SkipGroupNorm": gen_skip_group_norm,
}


@pytest.mark.parametrize("name", FAMILIES)
def test_matches_onnxruntime(name):
    run_family(FAMILIES[name], name, count=20, minimum=10)


def gen_bias_softmax(rng):
    """Against Add + Softmax-11 (which normalizes over every axis from `axis` on)."""
    nd = int(rng.integers(2, 5))
    shape = [int(v) for v in rng.integers(1, 5, size=nd)]
    a = int(rng.integers(1, nd))
    inner = int(rng.random() < 0.5)
    if inner:   # leading axes, then the softmax axes; 1 or absent between
        lead = int(rng.integers(0, a + 1))
        bshape = shape[:lead] + shape[a:]
        full = shape[:lead] + [1] * (a - lead) + shape[a:]
    else:
        bshape = shape[nd - int(rng.integers(1, nd + 1)):]
        full = bshape
    consts = {"bias": rnd(rng, bshape), "full": np.array(full, np.int64)}
    oracle = [onnx_node("Reshape", ["bias", "full"], ["b4"]), onnx_node("Add", ["data", "b4"], ["s"]),
              onnx_node("Softmax", ["s"], ["Y"], axis=a)]
    return Case(node("BiasSoftmax", ["data", "bias"], ["Y"], axis=a, is_inner_broadcast=inner),
                {"data": rnd(rng, shape, scale=2.0)}, consts, oracle=oracle, opset=11)


FAMILIES["BiasSoftmax"] = gen_bias_softmax
