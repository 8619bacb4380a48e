"""optimized_model_filepath: the optimized graph saved as valid ONNX (onnx.checker full check),
which ortgpu and onnxruntime load and run to the same outputs; fused ortgpu ops travel with
their function bodies and stay nodes on reload where a kernel exists."""
import os

import numpy as np
import onnx
import pytest
from onnx import helper

import ortgpu
from ortgpu.errors import Fail
from ortgpu import fused_ops
from ortgpu.graph import Node
from ortgpu.graph_query import consumers, output_names
from ortgpu.model_writer import EXTERNAL_FILE_KEY, EXTERNAL_MIN_SIZE_KEY
from ortgpu import optimizer
from ortgpu.providers import registry
from ortgpu.providers.dtype_sets import FLOAT
from support.pass_check import basic_patterns, f32, init, model, session, step_ops

ort = pytest.importorskip("onnxruntime")
Level = ortgpu.GraphOptimizationLevel
DOMAIN = fused_ops.DOMAIN


def _saved(m, tmp_path, level=Level.ORT_ENABLE_ALL, **config):
    """Save `m` optimized at `level`; (session that saved it, the path)."""
    path = str(tmp_path / "optimized.onnx")
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = level
    so.optimized_model_filepath = path
    for k, v in config.items():
        so.add_session_config_entry(k, v)
    return ortgpu.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]), path


def _same_everywhere(sess, path, feeds, rtol=1e-5, atol=1e-5):
    """The saved model passes the full check and runs as `sess` does, in ortgpu and onnxruntime."""
    onnx.checker.check_model(path, full_check=True)
    want = sess.run(None, feeds)
    for runner in (ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"]),
                   ort.InferenceSession(path, providers=["CPUExecutionProvider"])):
        for a, b in zip(runner.run(None, feeds), want):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("level", [Level.ORT_DISABLE_ALL, Level.ORT_ENABLE_BASIC, Level.ORT_ENABLE_ALL])
def test_saved_model_is_the_optimized_graph_and_runs_the_same(tmp_path, level):
    sess, path = _saved(basic_patterns(), tmp_path, level)
    saved = onnx.load(path)
    assert [n.op_type for n in saved.graph.node] == step_ops(sess)
    assert saved.ir_version == 8 and saved.opset_import[0].version == 17
    _same_everywhere(sess, path, {"x": f32(2, 3, 4, 4)})


def test_subgraphs_are_optimized_and_written_again(tmp_path):
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Neg", ["i"], ["o"])],
                             "then", [], [helper.make_tensor_value_info("o", 1, [3])])
    other = helper.make_graph([helper.make_node("Abs", ["x"], ["o2"])], "else", [],
                              [helper.make_tensor_value_info("o2", 1, [3])])
    m = model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
              [("x", 1, [3]), ("c", 9, [])], [("y", 1, [3])])
    sess, path = _saved(m, tmp_path)
    branch = next(a.g for a in onnx.load(path).graph.node[0].attribute if a.name == "then_branch")
    assert [n.op_type for n in branch.node] == ["Neg"] and branch.node[0].input == ["x"]
    for c in (True, False):
        _same_everywhere(sess, path, {"x": np.float32([-1, 2, -3]), "c": np.array(c)})


def test_ir3_model_lists_every_initializer_among_its_inputs(tmp_path):
    m = model([helper.make_node("Mul", ["k", "k"], ["k2"]), helper.make_node("Add", ["x", "k2"], ["y"])],
              [("x", 1, [2]), ("k", 1, [2])], [("y", 1, None)], [init("k", np.float32([1, 2]))],
              opset=7, ir_version=3)
    sess, path = _saved(m, tmp_path)
    saved = onnx.load(path)
    assert saved.ir_version == 3 and step_ops(sess) == ["Add"]
    assert {t.name for t in saved.graph.initializer} <= {v.name for v in saved.graph.input}
    _same_everywhere(sess, path, {"x": np.float32([5, 6])})


def test_external_initializers_as_the_session_config_says(tmp_path):
    config = {EXTERNAL_FILE_KEY: "weights.bin", EXTERNAL_MIN_SIZE_KEY: "64"}
    sess, path = _saved(basic_patterns(), tmp_path, **config)
    data = tmp_path / "weights.bin"
    size = data.stat().st_size
    assert size > 64 * 4  # the 64x5 MatMul weight at least
    _same_everywhere(sess, path, {"x": f32(2, 3, 4, 4)})
    _saved(basic_patterns(), tmp_path, **config)  # saving again replaces the data file
    assert data.stat().st_size == size


def test_unwritable_path_is_a_clear_error(tmp_path):
    so = ortgpu.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "missing" / "m.onnx")
    with pytest.raises(Fail, match="missing"):
        ortgpu.InferenceSession(basic_patterns().SerializeToString(), so, providers=["CPUExecutionProvider"])


# --- fused ops ----------------------------------------------------------------------------
def _muladd_body(node, opset):
    return helper.make_function(DOMAIN, "MulAdd", ["X", "S", "B"], ["Y"],
                                [helper.make_node("Mul", ["X", "S"], ["T"]), helper.make_node("Add", ["T", "B"], ["Y"])],
                                [helper.make_opsetid("", opset)])


def _fuse_muladd(graph, providers, overridable):
    """Toy extended pass: Mul whose only reader is an Add becomes ortgpu::MulAdd."""
    users, outs = consumers(graph), output_names(graph)
    fused = {}
    for mul in graph.nodes:
        readers = users.get(mul.outputs[0], [])
        if mul.op_type == "Mul" and mul.outputs[0] not in outs and len(readers) == 1 and readers[0].op_type == "Add":
            add = readers[0]
            b = add.inputs[1] if add.inputs[0] == mul.outputs[0] else add.inputs[0]
            fused[id(add)] = Node(add.name, "MulAdd", DOMAIN, 1, [*mul.inputs, b], add.outputs, {})
            fused[id(mul)] = None
    graph.nodes = [fused.get(id(n), n) for n in graph.nodes if fused.get(id(n), n) is not None]
    return len(fused) // 2


@pytest.fixture
def muladd(monkeypatch):
    """ortgpu::MulAdd(X, S, B) = X * S + B: a function body, a fusing pass, and a kernel whose
    calls are counted (registered for `provider`, set by the test, "shared" by default)."""
    calls = []

    def MulAdd(ctx, X, S, B):
        calls.append(ctx.provider)
        return X * S + B

    def register(provider="shared"):
        monkeypatch.setitem(registry._REGISTRY, (DOMAIN, "MulAdd", 1, provider),
                            registry.KernelDef("MulAdd", DOMAIN, 1, provider, MulAdd,
                                                              {"*": FLOAT}, "toy"))

    monkeypatch.setitem(fused_ops.FUNCTIONS, "MulAdd", _muladd_body)
    monkeypatch.setitem(optimizer.EXTENDED_PASSES, "ToyMulAddFusion", _fuse_muladd)
    return calls, register, monkeypatch


def _muladd_model():
    return model([helper.make_node("Mul", ["x", "s"], ["t"]), helper.make_node("Add", ["t", "b"], ["u"]),
                  helper.make_node("Relu", ["u"], ["y"])], [("x", 1, ["N", 3])], [("y", 1, None)],
                 [init("s", np.float32([1, -2, 3])), init("b", np.float32([0.5, 0.5, -4]))])


X = np.float32([[1, 2, 3], [-1, -2, -3]])


def test_fused_ops_are_saved_with_their_bodies_and_stay_nodes_on_reload(tmp_path, muladd):
    calls, register, _ = muladd
    register()
    sess, path = _saved(_muladd_model(), tmp_path)
    assert step_ops(sess) == ["MulAdd", "Relu"]
    saved = onnx.load(path)
    assert [(f.domain, f.name) for f in saved.functions] == [(DOMAIN, "MulAdd")]
    assert {(o.domain, o.version) for o in saved.opset_import} == {("", 17), (DOMAIN, 1)}
    _same_everywhere(sess, path, {"x": X})  # onnxruntime runs the body
    reloaded = session(onnx.load(path), level=Level.ORT_DISABLE_ALL)
    assert step_ops(reloaded) == ["MulAdd", "Relu"]
    calls.clear()
    reloaded.run(None, {"x": X})
    assert calls == ["CPUExecutionProvider"]


def test_fused_op_without_any_kernel_is_inlined_on_load(tmp_path, muladd):
    calls, register, monkeypatch = muladd
    register()
    sess, path = _saved(_muladd_model(), tmp_path)
    monkeypatch.delitem(registry._REGISTRY, (DOMAIN, "MulAdd", 1, "shared"))
    reloaded = session(onnx.load(path), level=Level.ORT_DISABLE_ALL)
    assert step_ops(reloaded) == ["Mul", "Add", "Relu"]
    np.testing.assert_allclose(reloaded.run(None, {"x": X})[0], sess.run(None, {"x": X})[0])


def test_fused_op_whose_kernel_this_provider_lacks_runs_its_body(tmp_path, muladd):
    calls, register, _ = muladd
    register("cuda")  # a kernel exists, so the node stays on load, but not for the CPU
    m = _muladd_model()
    sess, path = _saved(m, tmp_path)
    assert step_ops(sess) == ["Mul", "Add", "Relu"]  # the body, expanded at planning
    np.testing.assert_allclose(sess.run(None, {"x": X})[0], np.maximum(X * [1, -2, 3] + [0.5, 0.5, -4], 0))
    assert [n.op_type for n in onnx.load(path).graph.node] == ["MulAdd", "Relu"]
    assert not calls


def test_fused_nodes_of_one_op_with_different_attributes_call_their_own_overloads(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((4, 4, 3, 3)).astype(np.float32), rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    # HardSwish: onnxruntime's FusedConv does not take it, so these are ortgpu's, with bodies
    m = model([helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), helper.make_node("HardSwish", ["a"], ["b"]),
               helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], group=2),
               helper.make_node("HardSwish", ["c"], ["y"])],
              [("x", 1, [1, 4, 5, 5])], [("y", 1, None)], [init("w1", w1), init("w2", w2)])
    sess, path = _saved(m, tmp_path)
    saved = onnx.load(path)
    fused = [n for n in saved.graph.node if n.domain == DOMAIN]
    assert [n.op_type for n in fused] == ["FusedConv", "FusedConv"]
    assert saved.ir_version >= 10 and fused[0].overload != fused[1].overload
    assert sorted(f.overload for f in saved.functions) == sorted(n.overload for n in fused)
    assert (DOMAIN, 1) in {(o.domain, o.version) for o in saved.opset_import}
    _same_everywhere(sess, path, {"x": f32(1, 4, 5, 5)})


def test_onnxruntime_fused_ops_are_written_as_onnxruntime_writes_them(tmp_path):
    """com.microsoft FusedConv / FusedGemm: the domain imported, no function body, the file runs
    in onnxruntime and in ortgpu (which keeps the nodes) with the unfused model's results."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = rng.standard_normal((80, 5)).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("LeakyRelu", ["a"], ["b"], alpha=0.3),
               helper.make_node("Flatten", ["b"], ["f"]), helper.make_node("Gemm", ["f", "g"], ["h"]),
               helper.make_node("HardSigmoid", ["h"], ["y"], alpha=0.3, beta=0.6)],
              [("x", 1, [2, 3, 6, 7])], [("y", 1, None)], [init("w", w), init("g", g)])
    sess, path = _saved(m, tmp_path)
    saved = onnx.load(path)
    assert [(n.domain, n.op_type) for n in saved.graph.node] == \
        [("com.microsoft", "FusedConv"), ("", "Flatten"), ("com.microsoft", "FusedGemm")]
    assert not saved.functions and ("com.microsoft", 1) in {(o.domain, o.version) for o in saved.opset_import}
    gemm = saved.graph.node[2]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}["activation"] == b"HardSigmoid"
    feed = {"x": f32(2, 3, 6, 7)}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got_ort = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    reloaded = ortgpu.InferenceSession(path)
    assert step_ops(reloaded) == ["FusedConv", "Flatten", "FusedGemm"]
    for got in (got_ort, reloaded.run(None, feed)[0], sess.run(None, feed)[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
