"""The executor: topological plan, lifetimes, subgraphs with outer scope, function expansion."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.executor import Plan
from ortgpu.functions import expand_unimplemented
from ortgpu.graph import from_proto
from ortgpu.providers.cpu import CPUExecutionProvider

ort = pytest.importorskip("onnxruntime")


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _run_both(model, feed):
    mine = ortgpu.InferenceSession(model.SerializeToString()).run(None, feed)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    return mine, ref


def test_nodes_out_of_file_order_run_in_topological_order():
    nodes = [helper.make_node("Relu", ["b"], ["c"]), helper.make_node("Neg", ["a"], ["b"])]
    model = _model(nodes, [_f("a", [3])], [_f("c", [3])])
    x = np.array([-1.0, 2.0, -3.0], np.float32)
    (y,), (r,) = _run_both(model, {"a": x})
    np.testing.assert_array_equal(y, r)


def test_intermediates_are_released_after_their_last_use():
    nodes = [helper.make_node("Neg", ["x"], ["a"]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("Neg", ["c"], ["y"])]
    model = _model(nodes, [_f("x", [2])], [_f("y", [2])])
    graph = from_proto(model.graph, {"": 17})
    plan = Plan(graph, [CPUExecutionProvider()])
    freed_at = {plan.steps.index(st): {name for name, s in plan.slots.items() if s in st.frees}
                for st in plan.steps}
    assert "a" in freed_at[2] and "b" in freed_at[2]  # both read last by the Add
    assert "c" in freed_at[3]
    assert all("y" not in f for f in freed_at.values())  # graph outputs are kept


def test_if_reads_outer_scope_values():
    then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [], [_f("t", [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [_f("e", [2])])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)]
    model = _model(nodes, [helper.make_tensor_value_info("c", TensorProto.BOOL, []), _f("x", [2])],
                   [_f("y", [2])])
    x = np.array([1.5, -2.0], np.float32)
    for cond in (True, False):
        (y,), (r,) = _run_both(model, {"c": np.array(cond), "x": x})
        np.testing.assert_array_equal(y, r)


def test_loop_with_scan_output_and_outer_value():
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["acc_out"], ["scan"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), _f("acc_in", [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _f("acc_out", [2]), _f("scan", [2])])
    nodes = [helper.make_node("Loop", ["M", "", "init"], ["final", "stacked"], body=body)]
    model = _model(nodes, [helper.make_tensor_value_info("M", TensorProto.INT64, []), _f("init", [2]),
                           _f("step", [2])],
                   [_f("final", [2]), _f("stacked", [None, 2])])
    feed = {"M": np.array(4, np.int64), "init": np.zeros(2, np.float32),
            "step": np.array([1.0, 0.5], np.float32)}
    mine, ref = _run_both(model, feed)
    for a, b in zip(mine, ref):
        np.testing.assert_allclose(a, b)


class _NoMishProvider(CPUExecutionProvider):
    """The CPU provider with its Mish kernel hidden, so that Mish must be expanded."""

    def kernel_for(self, op_type, domain, opset):
        return None if op_type == "Mish" else super().kernel_for(op_type, domain, opset)


def test_function_ops_without_kernel_expand_into_their_body():
    model = _model([helper.make_node("Mish", ["x"], ["y"])], [_f("x", [5])], [_f("y", [5])], opset=22)
    graph = from_proto(model.graph, {"": 22})
    with pytest.raises(ortgpu.NotImplemented, match="Mish"):  # expansion is the session's step, not the plan's
        Plan(graph, [_NoMishProvider()])
    assert expand_unimplemented(graph, [_NoMishProvider()]) == 1
    plan = Plan(graph, [_NoMishProvider()])
    assert "Mish" not in [st.node.op_type for st in plan.steps]
    x = np.linspace(-3, 3, 5).astype(np.float32)
    (y,) = plan.run([x])
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_kernel_failure_names_the_node_and_session_stays_usable():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")]
    model = _model(nodes, [_f("x", [None]), helper.make_tensor_value_info("s", TensorProto.INT64, [1])],
                   [_f("y", None)])
    sess = ortgpu.InferenceSession(model.SerializeToString())
    with pytest.raises(ortgpu.RuntimeException, match="bad_reshape"):
        sess.run(None, {"x": np.zeros(6, np.float32), "s": np.array([4], np.int64)})
    (y,) = sess.run(None, {"x": np.zeros(6, np.float32), "s": np.array([6], np.int64)})
    assert y.shape == (6,)
