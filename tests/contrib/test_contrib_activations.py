"""com.microsoft GELU family and bias adds against onnxruntime (CPU provider; for the CUDA-only
BiasAdd and BiasSplitGelu, against the same computation in ai.onnx ops run by onnxruntime)."""
import numpy as np
import pytest

from support.harness import F16, F32, Case, node, onnx_node, pick, rnd, run_family


def _shape(rng):
    return [int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 4)))] + [int(rng.integers(1, 33))]


def gen_gelu(rng):
    dt = pick(rng, [F32, F32, F16])
    x = rnd(rng, _shape(rng), dt, 2.0)
    return Case(node("Gelu", ["X"], ["Y"]), {"X": x})


def gen_fast_gelu(rng):
    dt = pick(rng, [F32, F32, F16])
    x = rnd(rng, _shape(rng), dt, 2.0)
    feeds = {"X": x}
    if rng.random() < 0.6:
        feeds["bias"] = rnd(rng, [x.shape[-1]], dt)
    return Case(node("FastGelu", list(feeds), ["Y"]), feeds)


def gen_bias_gelu(rng):
    dt = pick(rng, [F32, F32, F16])
    x = rnd(rng, _shape(rng), dt, 2.0)
    return Case(node("BiasGelu", ["A", "B"], ["C"]), {"A": x, "B": rnd(rng, [x.shape[-1]], dt)})


def gen_quick_gelu(rng):
    dt = pick(rng, [F32, F32, F16])
    alpha = None if rng.random() < 0.5 else float(rng.uniform(0.5, 2.5))
    return Case(node("QuickGelu", ["X"], ["Y"], alpha=alpha), {"X": rnd(rng, _shape(rng), dt, 3.0)})


def gen_bias_add(rng):
    n, s, c = (int(v) for v in rng.integers(1, 6, size=3)) 
    c *= 4
    feeds = {"X": rnd(rng, [n, s, c]), "bias": rnd(rng, [c]), "skip": rnd(rng, [n, s, c])}
    oracle = [onnx_node("Add", ["X", "bias"], ["t"]), onnx_node("Add", ["t", "skip"], ["Y"])]
    return Case(node("BiasAdd", list(feeds), ["Y"]), feeds, oracle=oracle)


def gen_bias_split_gelu(rng):
    n, s, h = (int(v) for v in rng.integers(1, 6, size=3))
    d = 2 * h * 4
    feeds = {"X": rnd(rng, [n, s, d]), "bias": rnd(rng, [d])}
    oracle = [onnx_node("Add", ["X", "bias"], ["t"]),
              onnx_node("Split", ["t"], ["l", "r"], axis=-1, num_outputs=2),
              onnx_node("Gelu", ["r"], ["g"]), onnx_node("Mul", ["l", "g"], ["Y"])]
    return Case(node("BiasSplitGelu", list(feeds), ["Y"]), feeds, oracle=oracle, opset=20)


FAMILIES = {"Gelu": gen_gelu, "FastGelu": gen_fast_gelu, "BiasGelu": gen_bias_gelu,
            "QuickGelu": gen_quick_gelu, "BiasAdd": gen_bias_add, "BiasSplitGelu": gen_bias_split_gelu}


@pytest.mark.parametrize("name", FAMILIES)
def test_matches_onnxruntime(name):
    # onnxruntime's CPU kernels of this family are float32 only: float16 draws are skipped there
    run_family(FAMILIES[name], name, count=16, minimum=8)


def test_bias_of_the_wrong_length_is_refused():
    import ortgpu
    case = Case(node("BiasGelu", ["A", "B"], ["C"]), {"A": np.ones((2, 4), F32), "B": np.ones(3, F32)})
    sess = ortgpu.InferenceSession(case.model().SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match=r"BiasGelu: input 'B' must have shape \(4,\)"):
        sess.run(None, case.feeds)
