"""GemmActivationFusion: Gemm followed by an activation becomes one FusedGemm (activations
from test_conv_activation_fusion.ACTIVATIONS); disabled by name."""
import pytest
from onnx import helper

from support.fusion_cases import F32, check_fusion, make_model, ops, randn, session
from test_conv_activation_fusion import ACTIVATIONS

pytest.importorskip("onnxruntime")


def _gemm(act, opset, trans_b=1):
    inits = {"W": randn(5, 6, seed=1, scale=0.5) if trans_b else randn(6, 5, seed=1, scale=0.5), "C": randn(5, seed=2)}
    nodes = [helper.make_node("Gemm", ["x", "W", "C"], ["g"], transB=trans_b, alpha=0.7, beta=1.3)] + act("g", "y")
    return make_model(nodes, [("x", F32, [3, 6])], [("y", F32, [3, 5])], inits, opset=opset)


@pytest.mark.parametrize("name", ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Clip_inputs", "HardSwish",
                                  "HardSwish_written_out"])
def test_gemm_with_activation_fuses(name):
    """onnxruntime's FusedGemm (parameters as activation_alpha / activation_beta) for the
    activations it takes; ortgpu's op, with a function body, for Clip and HardSwish."""
    act, opset = ACTIVATIONS[name]
    domain = "ortgpu" if name.startswith(("HardSwish", "Clip")) else "com.microsoft"
    sess = check_fusion(_gemm(act, opset), {"x": randn(3, 6, scale=2)}, "FusedGemm", rtol=1e-5, atol=1e-6,
                        domain=domain)
    assert ops(sess) == ["FusedGemm"]
    node = sess._core.plan.graph.nodes[0]
    if name == "HardSigmoid":
        assert (node.attrs["activation_alpha"], node.attrs["activation_beta"]) == pytest.approx((0.3, 0.4))
    assert ("activation_params" in node.attrs) == (name == "Clip_inputs")


def test_disabled_by_name():
    model = _gemm(ACTIVATIONS["Relu"][0], 13)
    assert ops(session(model, disabled_optimizers=["GemmActivationFusion"])) == ["Gemm", "Relu"]
