"""BNMulAddFusion: a per-channel constant Mul and/or Add after an inference BatchNormalization
fold into its scale and B (DenseNet-121's BatchNormalization, Mul, Add); near misses stay.
Outputs are checked against onnxruntime (optimizations off) and ortgpu with no optimization."""
import numpy as np
import pytest
from onnx import helper

from support.pass_check import check_outputs, init, model, ops, run_pass, session, step_ops

RNG = np.random.default_rng(3)
C = 4
X = RNG.standard_normal((2, C, 5, 6)).astype(np.float32)
PARAMS = {"s": RNG.standard_normal(C), "b": RNG.standard_normal(C), "m": RNG.standard_normal(C),
          "v": RNG.random(C) + 0.5}
CONSTS = {
    "C11": RNG.standard_normal((C, 1, 1)).astype(np.float32),
    "1C11": RNG.standard_normal((1, C, 1, 1)).astype(np.float32),
    "scalar": np.float32(-0.75),
}


def _bn_then(ops_after, const, *, const_is_input=False, bn_read_twice=False, training=False, shared_params=False):
    """x -> BatchNormalization -> each op of `ops_after` with `const` -> Relu -> y."""
    names = ["s", "s", "s", "s"] if shared_params else ["s", "b", "m", "v"]
    attrs = {"training_mode": 1} if training else {}
    nodes = [helper.make_node("BatchNormalization", ["x", *names], ["t0", "rm", "rv"] if training else ["t0"],
                              epsilon=1e-3, **attrs)]
    for i, op in enumerate(ops_after):
        nodes.append(helper.make_node(op, [f"t{i}", "k"] if i % 2 == 0 else ["k", f"t{i}"], [f"t{i + 1}"]))
    nodes.append(helper.make_node("Relu", [f"t{len(ops_after)}"], ["y"]))
    outs = [("y", 1, None)]
    if bn_read_twice:
        nodes.append(helper.make_node("Neg", ["t0"], ["z"]))
        outs.append(("z", 1, None))
    inputs = [("x", 1, list(X.shape))]
    inits = [init(n, PARAMS[n].astype(np.float32)) for n in sorted(set(names))]
    if const_is_input:
        inputs.append(("k", 1, list(np.shape(const))))
    else:
        inits.append(init("k", const))
    return model(nodes, inputs, outs, inits, opset=15)


@pytest.mark.parametrize("shape", list(CONSTS))
@pytest.mark.parametrize("chain", [["Mul"], ["Add"], ["Mul", "Add"], ["Add", "Mul", "Add"]], ids="-".join)
def test_per_channel_mul_and_add_fold_into_the_batchnormalization(shape, chain):
    m = _bn_then(chain, CONSTS[shape])
    graph, n = run_pass(m, "BNMulAddFusion")
    assert n == 1 and ops(graph) == ["BatchNormalization"] + chain[1:] + ["Relu"]  # one fold a round
    assert step_ops(session(m, "BNMulAddFusion")) == ["BatchNormalization", "Relu"]  # rounds repeat
    check_outputs(m, {"x": X}, "BNMulAddFusion", rtol=1e-5, atol=1e-5)


def test_densenet_pattern_with_shared_parameters_leaves_batchnormalization_and_relu():
    m = _bn_then(["Mul", "Add"], CONSTS["C11"], shared_params=True)
    assert step_ops(session(m, "BNMulAddFusion")) == ["BatchNormalization", "Relu"]
    check_outputs(m, {"x": X}, "BNMulAddFusion", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [
    dict(const=RNG.standard_normal((1, 1, 1, 6)).astype(np.float32)),
    dict(const=CONSTS["C11"], bn_read_twice=True),
    dict(const=CONSTS["C11"], const_is_input=True),
], ids=["spatial", "bn_output_read_twice", "not_constant"])
def test_near_misses_stay(kw):
    const = kw.pop("const")
    m = _bn_then(["Mul"], const, **kw)
    graph, n = run_pass(m, "BNMulAddFusion")
    assert n == 0 and "Mul" in ops(graph)
    feeds = {"x": X, **({"k": const} if kw.get("const_is_input") else {})}
    check_outputs(m, feeds, "BNMulAddFusion", rtol=1e-5, atol=1e-5)


def test_training_mode_stays():
    graph, n = run_pass(_bn_then(["Mul"], CONSTS["C11"], training=True), "BNMulAddFusion")
    assert n == 0 and "Mul" in ops(graph)
