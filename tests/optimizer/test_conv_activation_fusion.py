"""ConvActivationFusion: every foldable activation (the table GemmActivationFusion's and
ConvAddActivationFusion's tests use too), the near-misses, the per-provider rule (no kernel for
the fused op, no fusion) and fusion inside subgraphs."""
import numpy as np
import pytest
from onnx import helper

import ortgpu
from support.fusion_cases import (F16, F32, assert_close, check_fusion, check_unfused, const, make_model, onnxruntime_run, ops,
                          randn, session, written_model)
from ortgpu.providers.cpu import CPUExecutionProvider

pytest.importorskip("onnxruntime")

# (activation node builder, opset): Clip appears with attributes (opset 6) and inputs (13)
ACTIVATIONS = {
    "Relu": (lambda y, z: [helper.make_node("Relu", [y], [z])], 13),
    "LeakyRelu": (lambda y, z: [helper.make_node("LeakyRelu", [y], [z], alpha=0.2)], 13),
    "Sigmoid": (lambda y, z: [helper.make_node("Sigmoid", [y], [z])], 13),
    "Tanh": (lambda y, z: [helper.make_node("Tanh", [y], [z])], 13),
    "HardSigmoid": (lambda y, z: [helper.make_node("HardSigmoid", [y], [z], alpha=0.3, beta=0.4)], 13),
    "HardSwish": (lambda y, z: [helper.make_node("HardSwish", [y], [z])], 14),
    "Clip_attributes": (lambda y, z: [helper.make_node("Clip", [y], [z], min=-0.5, max=0.7)], 6),
    "Clip_inputs": (lambda y, z: [const("lo", 0.0), const("hi", 6.0), helper.make_node("Clip", [y, "lo", "hi"], [z])], 13),
    "Clip_min_only": (lambda y, z: [const("lo", -0.2), helper.make_node("Clip", [y, "lo"], [z])], 13),
    "HardSwish_written_out": (lambda y, z: [  # y * Clip(y + 3, 0, 6) / 6, as paddle2onnx writes it
        const("three", 3.0), const("lo", 0.0), const("hi", 6.0), const("six", 6.0),
        helper.make_node("Add", [y, "three"], ["h1"]), helper.make_node("Clip", ["h1", "lo", "hi"], ["h2"]),
        helper.make_node("Mul", ["h2", y], ["h3"]), helper.make_node("Div", ["h3", "six"], [z])], 12),
}


def _conv(act, opset, dtype=np.float32, conv_out_used=False, bias=True):
    t = F16 if dtype == np.float16 else F32
    inits = {"W": randn(4, 3, 3, 3, seed=1, scale=0.4).astype(dtype)}
    ins = ["x", "W"]
    if bias:
        inits["B"] = randn(4, seed=2, scale=0.2).astype(dtype)
        ins.append("B")
    nodes = [helper.make_node("Conv", ins, ["c"], pads=[1, 1, 1, 1], strides=[1, 2])] + act("c", "y")
    outs = [("y", t, [1, 4, 6, 4])] + ([("c", t, [1, 4, 6, 4])] if conv_out_used else [])
    return make_model(nodes, [("x", t, [1, 3, 6, 7])], outs, inits, opset=opset)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_conv_with_activation_fuses(name):
    act, opset = ACTIVATIONS[name]
    # onnxruntime's FusedConv takes every activation but HardSwish (ortgpu's op, a function body)
    domain = "ortgpu" if name.startswith("HardSwish") else "com.microsoft"
    sess = check_fusion(_conv(act, opset), {"x": randn(1, 3, 6, 7, scale=2)}, "FusedConv", rtol=1e-5, atol=1e-6,
                        domain=domain)
    assert ops(sess) == ["FusedConv"]


def test_conv_without_bias_and_float16():
    act, opset = ACTIVATIONS["HardSigmoid"]
    check_fusion(_conv(act, opset, bias=False), {"x": randn(1, 3, 6, 7)}, "FusedConv", domain="com.microsoft")
    act, opset = ACTIVATIONS["Clip_inputs"]
    feed = {"x": randn(1, 3, 6, 7, dtype=np.float16, scale=3)}
    model = _conv(lambda y, z: [const("lo", 0.0, np.float16), const("hi", 6.0, np.float16),
                                helper.make_node("Clip", [y, "lo", "hi"], [z])], 15, dtype=np.float16)
    check_fusion(model, feed, "FusedConv", rtol=2e-3, atol=2e-3, domain="ortgpu")   # float16: ortgpu's op


def test_float16_clip_below_opset_15_is_left_alone():
    model = _conv(lambda y, z: [const("lo", 0.0, np.float16), const("hi", 6.0, np.float16),
                                helper.make_node("Clip", [y, "lo", "hi"], [z])], 13, dtype=np.float16)
    check_unfused(model, {"x": randn(1, 3, 6, 7, dtype=np.float16)}, "FusedConv", rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("case", ["conv_output_used", "clip_bound_not_constant", "not_an_activation",
                                  "hard_swish_with_other_constant"])
def test_near_misses_do_not_fuse(case):
    feed = {"x": randn(1, 3, 6, 7)}
    if case == "hard_swish_with_other_constant":
        model = _conv(ACTIVATIONS["HardSwish_written_out"][0], 12)
        model.graph.node[1].attribute[0].t.CopyFrom(helper.make_tensor("value", F32, [], [4.0]))  # y + 4
    elif case == "conv_output_used":
        model = _conv(ACTIVATIONS["Relu"][0], 13, conv_out_used=True)
    elif case == "clip_bound_not_constant":
        model = _conv(lambda y, z: [helper.make_node("Clip", [y, "lo"], [z])], 13)
        model.graph.input.append(helper.make_tensor_value_info("lo", F32, []))
        feed["lo"] = np.array(0.1, np.float32)
    else:
        model = _conv(lambda y, z: [helper.make_node("Elu", [y], [z])], 13)
    check_unfused(model, feed, "FusedConv")


class _NoFusedKernels(CPUExecutionProvider):
    """A CPU provider that has every kernel except the fused ones (ortgpu's and onnxruntime's)."""

    def kernel_for(self, op_type, domain, opset):
        return None if domain in ("ortgpu", "com.microsoft") else super().kernel_for(op_type, domain, opset)


def test_a_provider_without_the_fused_kernel_keeps_the_pattern():
    model = _conv(ACTIVATIONS["Relu"][0], 13)
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=[_NoFusedKernels()])
    assert ops(sess) == ["Conv", "Relu"]
    assert ops(ortgpu.InferenceSession(model.SerializeToString(), providers=[CPUExecutionProvider()])) == ["FusedConv"]


def test_disabled_by_name():
    model = _conv(ACTIVATIONS["Relu"][0], 13)
    assert ops(session(model, disabled_optimizers=["ConvActivationFusion"])) == ["Conv", "Relu"]


def test_fuses_inside_subgraphs_and_the_model_imports_the_domain(tmp_path):
    branch = lambda name: helper.make_graph(  # noqa: E731
        [helper.make_node("Conv", ["x", "W"], [name + "_c"]), helper.make_node("Relu", [name + "_c"], [name])],
        name, [], [helper.make_tensor_value_info(name, F32, [1, 4, 4, 5])])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=branch("t"), else_branch=branch("e"))]
    model = make_model(nodes, [("cond", 9, []), ("x", F32, [1, 3, 6, 7])], [("y", F32, [1, 4, 4, 5])],
                       {"W": randn(4, 3, 3, 3, seed=1)}, opset=13)
    sess = session(model)
    inner = [op for _, op, _ in sess.get_provider_assignment(include_subgraphs=True)]
    assert inner.count("FusedConv") == 2 and "Relu" not in inner
    assert sess._core.plan.graph.opsets["com.microsoft"] == 1 and "ortgpu" not in sess._core.plan.graph.opsets
    feed = {"cond": np.array(False), "x": randn(1, 3, 6, 7)}
    assert_close(sess.run(None, feed), onnxruntime_run(model, feed), 1e-5, 1e-6)
    saved = written_model(model)   # com.microsoft::FusedConv in both branches, no function body
    assert ("com.microsoft", 1) in {(o.domain, o.version) for o in saved.opset_import} and not saved.functions
    branches = [a.g for a in saved.graph.node[0].attribute]
    assert [(n.domain, n.op_type) for g in branches for n in g.node] == [("com.microsoft", "FusedConv")] * 2
    assert_close(onnxruntime_run(saved, feed), onnxruntime_run(model, feed), 1e-5, 1e-6)
