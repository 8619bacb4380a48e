"""Forms kernels prepare from their constant inputs (KernelContext.prepared, providers/constant_forms.py)
never serve a stale value: two sessions of one model with different initializers, an overridable
initializer fed by a run or bound through IOBinding / run_with_ort_values, initializers of If
branches and of the enclosing graph, a budget too small to keep anything.  Each result is
checked against onnxruntime on the same model and feeds, and the tests check that forms really
are kept where they may be (else the staleness checks would pass for want of a cache)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.providers.constant_forms import ConstantForms
from ortgpu.providers.registry import KernelContext

K, N, BLOCK = 64, 24, 32
MS = "com.microsoft"


def _weights(seed):
    """A 4-bit MatMulNBits weight (N, K/BLOCK, BLOCK/2 bytes) and its scales, seeded."""
    rng = np.random.default_rng(seed)
    B = rng.integers(0, 256, (N, K // BLOCK, BLOCK // 2)).astype(np.uint8)
    scales = (rng.random(N * (K // BLOCK)) * 0.1 + 0.01).astype(np.float32)
    return B, scales


def _nbits_model(B, scales, *, overridable=False):
    """y = x @ dequantize(B).T, B an initializer (also a graph input when `overridable`)."""
    node = helper.make_node("MatMulNBits", ["x", "B", "scales"], ["y"], domain=MS, K=K, N=N, bits=4,
                            block_size=BLOCK)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])]
    if overridable:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.UINT8, list(B.shape)))
    g = helper.make_graph([node], "nbits", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(B, "B"), numpy_helper.from_array(scales, "scales")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)],
                             ir_version=10).SerializeToString()


def _pair(model):
    return (ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]),
            ort.InferenceSession(model, providers=["CPUExecutionProvider"]))


def _x(seed=0, rows=3):
    return np.random.default_rng(100 + seed).standard_normal((rows, K)).astype(np.float32)


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _forms_of(session, op_type):
    """The tags of the forms the (first) step of `op_type` keeps."""
    step = next(st for st in session._core.plan.steps if st.node.op_type == op_type)
    return set(step.ctx._forms)


def test_two_sessions_with_different_initializers_keep_their_own_forms():
    (m1, o1), (m2, o2) = _pair(_nbits_model(*_weights(1))), _pair(_nbits_model(*_weights(2)))
    x = _x()
    for _ in range(2):  # alternate, so that a form shared between the sessions would show
        _close(m1.run(None, {"x": x})[0], o1.run(None, {"x": x})[0])
        _close(m2.run(None, {"x": x})[0], o2.run(None, {"x": x})[0])
    assert "weight" in _forms_of(m1, "MatMulNBits") and "weight" in _forms_of(m2, "MatMulNBits")
    assert not np.allclose(m1.run(None, {"x": x})[0], m2.run(None, {"x": x})[0])


def test_an_overridable_initializer_fed_by_a_run_is_not_served_from_the_form():
    B, scales = _weights(3)
    mine, theirs = _pair(_nbits_model(B, scales, overridable=True))
    assert [i.name for i in mine.get_overridable_initializers()] == ["B"]
    other = _weights(4)[0]
    x = _x()
    _close(mine.run(None, {"x": x})[0], theirs.run(None, {"x": x})[0])          # the initializer
    _close(mine.run(None, {"x": x, "B": other})[0], theirs.run(None, {"x": x, "B": other})[0])
    _close(mine.run(None, {"x": x})[0], theirs.run(None, {"x": x})[0])          # and back
    # B can be fed, so it is no constant: the weight is made per run, never kept
    assert "weight" not in _forms_of(mine, "MatMulNBits")


def test_an_overridable_initializer_bound_or_passed_as_ort_value_is_used():
    B, scales = _weights(5)
    mine, theirs = _pair(_nbits_model(B, scales, overridable=True))
    other = _weights(6)[0]
    x = _x(1)
    want = theirs.run(None, {"x": x, "B": other})[0]
    binding = mine.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_cpu_input("B", other)
    binding.bind_output("y")
    mine.run_with_iobinding(binding)
    _close(binding.copy_outputs_to_cpu()[0], want)
    got = mine.run_with_ort_values(["y"], {"x": ortgpu.OrtValue.ortvalue_from_numpy(x),
                                           "B": ortgpu.OrtValue.ortvalue_from_numpy(other)})[0].numpy()
    _close(got, want)
    _close(mine.run(None, {"x": x})[0], theirs.run(None, {"x": x})[0])


def _if_model(B_then, B_else, B_outer, scales):
    """If(cond): the then-branch multiplies by its own initializer, the else-branch by an
    initializer of the enclosing graph (an outer-scope value) plus by its own; both read the
    enclosing graph's scales, and the then-branch an outer value computed by a node."""
    def nbits(w, x, y):
        return helper.make_node("MatMulNBits", [x, w, "scales"], [y], domain=MS, K=K, N=N, bits=4, block_size=BLOCK)

    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    then_g = helper.make_graph([nbits("Bt", "x", "t"), nbits("Bc", "x", "u"), helper.make_node("Add", ["t", "u"], ["y"])],
                               "then", [], out, [numpy_helper.from_array(B_then, "Bt")])
    else_g = helper.make_graph([nbits("Bo", "x", "h"), nbits("Be", "x", "k"), helper.make_node("Add", ["h", "k"], ["y"])],
                               "else", [], out, [numpy_helper.from_array(B_else, "Be")])
    g = helper.make_graph(
        [helper.make_node("Identity", ["Bo"], ["Bi"]), helper.make_node("Not", ["c"], ["nc"]),
         helper.make_node("Where", ["nc", "Bi", "Bi"], ["Bc"]),   # a computed outer value
         helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "if",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, K])], out,
        [numpy_helper.from_array(B_outer, "Bo"), numpy_helper.from_array(scales, "scales")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)],
                             ir_version=10).SerializeToString()


def test_forms_inside_if_branches_and_of_outer_scope_values():
    (bt, scales), (be, _), (bo, _) = _weights(7), _weights(8), _weights(9)
    model = _if_model(bt, be, bo, scales)
    (m1, o1) = _pair(model)
    (m2, o2) = _pair(_if_model(be, bt, bt, scales))   # the same graph, other initializers
    x = _x(2)
    for c in (True, False, True, False):
        feed = {"c": np.array(c), "x": x}
        _close(m1.run(None, feed)[0], o1.run(None, feed)[0])
        _close(m2.run(None, feed)[0], o2.run(None, feed)[0])
    step = next(st for st in m1._core.plan.steps if st.node.op_type == "If")
    branches = dict(step.subplans)
    own, computed = (st.ctx for st in branches["then_branch"].steps[:2])
    outer = branches["else_branch"].steps[0].ctx
    assert own.is_constant(1) and own.is_constant(2) and "weight" in own._forms   # its own B, the outer scales
    assert outer.is_constant(1) and "weight" in outer._forms   # an initializer of the enclosing graph
    assert not computed.is_constant(1) and not computed._forms  # computed by a node: made per run


def test_a_budget_too_small_keeps_nothing_and_changes_no_result(monkeypatch):
    monkeypatch.setenv("ORTGPU_CONSTANT_FORMS_MB", "0")
    mine, theirs = _pair(_nbits_model(*_weights(10)))
    x = _x(3)
    for _ in range(2):
        _close(mine.run(None, {"x": x})[0], theirs.run(None, {"x": x})[0])
    assert not _forms_of(mine, "MatMulNBits")
    assert mine._core.constant_forms.used == 0


def test_prepared_serves_a_form_only_for_the_same_arrays():
    store = ConstantForms(budget_bytes=1 << 20)
    ctx = KernelContext(np, "CPUExecutionProvider", constant_inputs=(False, True), constant_forms=store)
    w = np.arange(6.0)
    made = []

    def make(v):
        made.append(v)
        return v * 2

    assert ctx.is_constant(1) and not ctx.is_constant(0) and ctx.is_constant(5)  # 5: omitted
    np.testing.assert_array_equal(ctx.prepared("w", (1,), (w,), lambda: make(w)), w * 2)
    ctx.prepared("w", (1,), (w,), lambda: make(w))
    assert len(made) == 1 and store.used == w.nbytes
    w2 = w + 1   # another array in the same place (equal shape): made again, not served stale
    np.testing.assert_array_equal(ctx.prepared("w", (1,), (w2,), lambda: make(w2)), w2 * 2)
    assert len(made) == 2
    x = np.ones(3)  # input 0 is not constant: made on every call, never kept
    ctx.prepared("x", (0,), (x,), lambda: make(x))
    ctx.prepared("x", (0,), (x,), lambda: make(x))
    assert len(made) == 4 and "x" not in ctx._forms
    # a context the executor did not make keeps nothing and calls nothing constant
    bare = KernelContext(np, "CPUExecutionProvider")
    assert not bare.is_constant(0)
    bare.prepared("w", (0,), (w,), lambda: make(w))
    bare.prepared("w", (0,), (w,), lambda: make(w))
    assert len(made) == 6


@pytest.mark.parametrize("name", ["cnn_static_qoperator_u8", "cnn_static_qoperator_s8_perchannel",
                                  "mlp_dynamic_u8", "mlp_dynamic_fused", "embedding_nbits4", "bert_block_dynamic_fused"])
def test_quantized_models_keep_forms_and_match_onnxruntime_run_after_run(name):
    """The models of onnxruntime's quantization tool: the second and third runs (served from
    kept forms) give what the first gave, and what onnxruntime gives."""
    import os
    d = os.path.join(os.path.dirname(__file__), "..", "data", "quantized")
    path = os.path.join(d, f"{name}.onnx")
    feed = dict(np.load(os.path.join(d, f"{name}.npz")))
    mine, theirs = _pair(path)
    first = mine.run(None, feed)
    want = theirs.run(None, feed)
    kept = sum(len(st.ctx._forms) for st in mine._core.plan.steps if st.ctx is not None)
    assert kept > 0
    for _ in range(2):
        for a, b, w in zip(mine.run(None, feed), first, want):
            np.testing.assert_array_equal(a, b)
            if a.dtype.kind in "iu":   # quantized outputs: within one step of onnxruntime's
                assert np.abs(a.astype(np.int64) - w.astype(np.int64)).max() <= 1
            else:
                np.testing.assert_allclose(a, w, rtol=2e-2, atol=2e-2)


def _gather_model(table, scales):
    node = helper.make_node("GatherBlockQuantized", ["table", "ids", "scales"], ["y"], domain=MS, bits=4,
                            block_size=16, gather_axis=0, quantize_axis=1)
    g = helper.make_graph([node], "gbq", [helper.make_tensor_value_info("ids", TensorProto.INT64, None)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(table, "table"), numpy_helper.from_array(scales, "scales")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)],
                             ir_version=10).SerializeToString()


@pytest.mark.parametrize("budget_mb", ["1", "0"])
def test_gather_block_quantized_table_kept_only_within_the_budget(budget_mb, monkeypatch):
    """A table past the budget is not dequantized whole on every run: the rows are gathered first."""
    monkeypatch.setenv("ORTGPU_CONSTANT_FORMS_MB", budget_mb)
    rng = np.random.default_rng(11)
    table = rng.integers(0, 256, (50, 16)).astype(np.uint8)          # 50 rows of 32 4-bit values
    scales = (rng.random((50, 2)) * 0.1 + 0.01).astype(np.float32)
    mine, theirs = _pair(_gather_model(table, scales))
    for ids in (np.array([[0, 49, 7]]), np.array([3, -1, 60])):     # in range; negative and out of range
        _close(mine.run(None, {"ids": ids})[0], theirs.run(None, {"ids": ids})[0])
    step = mine._core.plan.steps[0]
    assert ("table" in step.ctx._forms) == (budget_mb == "1")
    calls = []
    monkeypatch.setattr("ortgpu.providers.kernels.contrib_quant_nbits._dequantized_table",
                        lambda *a, **k: calls.append(1))
    mine.run(None, {"ids": np.array([1, 2])})
    assert not calls   # kept and served, or never made past the budget
