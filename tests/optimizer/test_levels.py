"""graph_optimization_level as onnxruntime: each level runs its passes and those below it;
disabled_optimizers skips passes by name; the verbose log says what each pass did."""
import logging

import numpy as np
import onnx
import pytest
from onnx import helper

import ortgpu
from ortgpu import optimizer
from ortgpu.errors import Fail
from support.pass_check import basic_patterns, check_outputs, f32, init, model, session, step_ops

ort = pytest.importorskip("onnxruntime")
Level = ortgpu.GraphOptimizationLevel


def test_basic_level_leaves_the_nodes_onnxruntime_leaves(tmp_path):
    m = basic_patterns()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "ort.onnx")
    ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    theirs = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    # onnxruntime keeps the dead Neg in the graph (and runs it); ortgpu drops it.
    assert step_ops(session(m)) == [op for op in theirs if op != "Neg"]
    check_outputs(m, {"x": f32(2, 3, 4, 4)}, rtol=1e-4, atol=1e-4)


def test_disable_all_runs_every_node():
    assert len(step_ops(session(basic_patterns(), level=Level.ORT_DISABLE_ALL))) == 18


@pytest.fixture
def spies(monkeypatch):
    """A spy pass in the extended and layout tables; the levels that ran each."""
    ran = []

    def spy(name):
        def run(graph, providers, overridable):
            ran.append(name)
            return 0
        return run
    monkeypatch.setitem(optimizer.EXTENDED_PASSES, "SpyExtended", spy("extended"))
    monkeypatch.setitem(optimizer.LAYOUT_PASSES, "SpyLayout", spy("layout"))
    return ran


@pytest.mark.parametrize("level,tables", [
    (Level.ORT_DISABLE_ALL, set()), (Level.ORT_ENABLE_BASIC, set()), (Level.ORT_ENABLE_EXTENDED, {"extended"}),
    (Level.ORT_ENABLE_LAYOUT, {"extended", "layout"}), (Level.ORT_ENABLE_ALL, {"extended", "layout"})])
def test_each_level_runs_its_tables_and_those_below(spies, level, tables):
    sess = session(basic_patterns(), level=level)
    assert set(spies) == tables
    assert ("Identity" in step_ops(sess)) == (level == Level.ORT_DISABLE_ALL)


def test_disabled_optimizers_skip_passes_by_name(spies):
    so = ortgpu.SessionOptions()
    sess = ortgpu.InferenceSession(basic_patterns().SerializeToString(), so, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=["EliminateIdentity", "MatMulAddFusion", "SpyExtended"])
    ops = step_ops(sess)
    assert "Identity" in ops and "MatMul" in ops and "Gemm" not in ops and "BatchNormalization" not in ops
    assert spies == ["layout"]


def test_passes_repeat_until_nothing_changes():
    """Identity elimination exposes a Conv+Mul only in the second round."""
    m = model([helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Identity", ["c"], ["i"]),
               helper.make_node("Mul", ["i", "k"], ["y"])], [("x", 1, [1, 3, 4, 4])], [("y", 1, None)],
              [init("W", f32(2, 3, 1, 1)), init("k", np.float32(2.0))])
    assert step_ops(session(m)) == ["Conv"]


def test_verbose_log_says_what_each_pass_did(caplog):
    with caplog.at_level(logging.INFO, logger="ortgpu"):
        session(basic_patterns(), log_severity_level=0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("optimizer:")]
    assert "optimizer: EliminateIdentity made 1 rewrites" in lines
    assert "optimizer: ExpandElimination changed nothing" in lines
    assert len(lines) == len(optimizer.BASIC_PASSES)


def test_a_failing_pass_is_a_fail_naming_it(monkeypatch):
    def broken(graph, providers, overridable):
        raise KeyError("surprise")
    monkeypatch.setitem(optimizer.BASIC_PASSES, "BrokenPass", broken)
    with pytest.raises(Fail, match="BrokenPass.*KeyError"):
        session(basic_patterns())
    assert step_ops(session(basic_patterns(), only="EliminateIdentity"))  # disabling it is the way around
