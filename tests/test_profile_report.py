"""The profile report's "why is this slow" parts: run-to-run spread, input shapes per node,
set-up phases, a memory section, per-op-type comparison of two traces (ours and onnxruntime's),
distinct colours and a sortable, filterable node table, FLOPs of fused attention ops, the CPU
peak cached."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ortgpu
from ortgpu.profiling import cost, summarize
from ortgpu.profiling.compare import compare, compare_traces, format_compare
from ortgpu.profiling.html import op_colors, render_html


def _model():
    nodes = [h.make_node("Add", ["x", "b"], ["a"], name="add"),
             h.make_node("Conv", ["a4", "w"], ["c"], name="conv", strides=[1, 1], pads=[1, 1, 1, 1]),
             h.make_node("Reshape", ["a", "shape"], ["a4"], name="reshape"),
             h.make_node("Relu", ["c"], ["y"], name="relu")]
    nodes = [nodes[0], nodes[2], nodes[1], nodes[3]]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 48])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)],
                     [h.make_tensor("b", T.FLOAT, [48], np.arange(48, dtype=np.float32)),
                      h.make_tensor("shape", T.INT64, [4], [2, 3, 4, 4]),
                      h.make_tensor("w", T.FLOAT, [5, 3, 3, 3], np.ones(135, np.float32))])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


FEED = {"x": np.ones((2, 48), np.float32)}


def _profiled(rt, prefix, runs):
    """A profile written by runtime `rt` (ortgpu or onnxruntime) over `runs` runs of the model,
    without graph optimizations; its path."""
    so = rt.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(prefix)
    so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = rt.InferenceSession(_model().SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        sess.run(None, FEED)
    return sess.end_profiling()


def _ours(tmp_path, runs=5):
    return _profiled(ortgpu, tmp_path / "ours", runs)


def _theirs(tmp_path, runs=5):
    return _profiled(pytest.importorskip("onnxruntime"), tmp_path / "theirs", runs)


def _run_durations(path) -> list[int]:
    """The model_run events' durations in the order the runs started."""
    runs = sorted((e for e in json.load(open(path)) if e["name"] == "model_run"), key=lambda e: e["ts"])
    return [e["dur"] for e in runs]


def _op(summary, op_type):
    return next(o for o in summary.ops if o.op_type == op_type)


def test_run_spread_is_the_model_run_durations(tmp_path):
    path = _ours(tmp_path, runs=7)
    s = summarize(path, skip_runs=1)
    durs = _run_durations(path)
    assert len(durs) == 7
    counted = durs[1:]
    spread = s.run_spread()
    assert spread["min"] == min(counted) and spread["max"] == max(counted)
    assert spread["median"] == pytest.approx(np.median(counted))
    assert spread["p90"] == pytest.approx(np.percentile(counted, 90))
    text = ortgpu.profiling.format_table(s)
    assert re.search(r"min [\d.]+ ms, median [\d.]+ ms, p90 [\d.]+ ms", text)


def test_input_shapes_per_node_in_table_and_html(tmp_path):
    path = _ours(tmp_path)
    s = summarize(path)
    rows = {r.name: r for r in s.nodes}
    assert rows["add"].input_shapes == "2x48, 48"
    assert rows["conv"].input_shapes == "2x3x4x4, 5x3x3x3"
    text = ortgpu.profiling.format_table(s, top=10)
    assert "input shapes" in text and "2x3x4x4, 5x3x3x3" in text
    page = render_html(s, path)
    assert "<td>2x3x4x4, 5x3x3x3</td>" in page


def test_set_up_phases_in_the_trace_and_summary(tmp_path):
    path = _ours(tmp_path)
    events = json.load(open(path))
    init = next(e for e in events if e["name"] == "session_initialization")
    s = summarize(path)
    assert set(s.setup) == {"load_us", "convert_us", "optimize_us", "partition_plan_compile_us"}
    assert all(v >= 0 for v in s.setup.values())
    # the phases after loading happen inside session_initialization
    after_load = sum(v for k, v in s.setup.items() if k != "load_us")
    assert after_load <= init["dur"] + 3  # us rounding of each phase
    assert "set-up: " in ortgpu.profiling.format_table(s)


def test_compare_ours_with_onnxruntimes_trace(tmp_path, capsys):
    a_path, b_path = _ours(tmp_path), _theirs(tmp_path)
    a, b, rows = compare_traces(a_path, b_path, skip_runs=1)
    assert {r.op_type for r in rows} == {"Add", "Reshape", "Conv", "Relu"}
    for r in rows:
        assert r.a_us == pytest.approx(_op(a, r.op_type).host_us / a.runs)
        assert r.b_us == pytest.approx(_op(b, r.op_type).host_us / b.runs)
        assert r.a_calls == r.b_calls == 1
        assert r.delta_us == pytest.approx(r.b_us - r.a_us)
    assert [abs(r.delta_us) for r in rows] == sorted((abs(r.delta_us) for r in rows), reverse=True)
    from ortgpu.cli import main
    assert main(["profile", "--compare", a_path, b_path]) == 0
    out = capsys.readouterr().out
    for op in ("Add", "Reshape", "Conv", "Relu"):
        assert re.search(rf"^\s+{op}\s+[\d.]+\s+[\d.]+\s+[+-][\d.]+", out, re.M), op


def test_compare_a_trace_with_itself_and_with_missing_op_types(tmp_path):
    path = _ours(tmp_path)
    s = summarize(path)
    assert all(r.delta_us == 0 and r.ratio == 1 for r in compare(s, s))
    fewer = summarize([e for e in json.load(open(path)) if e.get("args", {}).get("op_name") != "Relu"])
    rows = {r.op_type: r for r in compare(fewer, s)}
    assert rows["Relu"].a_us == 0 and rows["Relu"].ratio is None and rows["Relu"].b_us > 0
    assert "Relu" in format_compare(fewer, s, list(rows.values()))


def test_profile_without_model_or_compare_is_a_usage_error():
    from ortgpu.cli import main
    with pytest.raises(SystemExit) as e:
        main(["profile"])
    assert e.value.code == 2


def test_each_op_type_has_its_own_colour_and_the_table_sorts_and_filters(tmp_path):
    ops = [f"Op{i}" for i in range(40)]
    colours = op_colors(ops)
    assert len(set(colours.values())) == 40
    path = _ours(tmp_path)
    s = summarize(path)
    page = render_html(s, path)
    used = op_colors(o.op_type for o in s.ops)
    for op, c in used.items():
        assert f'fill="{c}"' in page, op
    assert 'id="filter"' in page and "data-sort" in page and 'class="row"' in page
    assert re.search(r'<td data-v="[\d.e+-]+">', page)


def test_fused_attention_flops_are_its_matmuls():
    b, s, hin, hidden = 2, 7, 16, 24
    proj = cost.flops("MatMul", [[b, s, hin], [hin, 3 * hidden]], [[b, s, 3 * hidden]])
    heads = 4
    d = hidden // heads
    scores = cost.flops("MatMul", [[b, heads, s, d], [b, heads, d, s]], [[b, heads, s, s]])
    context = cost.flops("MatMul", [[b, heads, s, s], [b, heads, s, d]], [[b, heads, s, d]])
    assert cost.flops("Attention", [[b, s, hin], [hin, 3 * hidden], [3 * hidden]], [[b, s, hidden]]) \
        == proj + scores + context
    kv = 11
    mha = cost.flops("MultiHeadAttention", [[b, s, hidden], [b, kv, hidden], [b, kv, hidden]], [[b, s, hidden]])
    assert mha == cost.flops("MatMul", [[b, heads, s, d], [b, heads, d, kv]], [[b, heads, s, kv]]) \
        + cost.flops("MatMul", [[b, heads, s, kv], [b, heads, kv, d]], [[b, heads, s, d]])


def test_cpu_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    calls = []
    measured = cost.Peak("cpu", {"float": 1e11, "float16": 1e11}, 2e10, "measured")
    monkeypatch.setenv("ORTGPU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cost, "measure_cpu_peak", lambda: calls.append(1) or measured)
    monkeypatch.setattr(cost, "_PEAK_CACHE", {})
    assert cost.cached_cpu_peak() is measured and cost.cached_cpu_peak() is measured
    assert len(calls) == 1
    monkeypatch.setattr(cost, "_PEAK_CACHE", {})  # a new process: read back from the file
    again = cost.cached_cpu_peak()
    assert len(calls) == 1 and again.flops == measured.flops and again.bytes_per_s == measured.bytes_per_s
    assert "cached" in again.source
    saved = json.load(open(tmp_path / "cpu_peak.json"))
    saved["key"] = "another machine"
    json.dump(saved, open(tmp_path / "cpu_peak.json", "w"))
    monkeypatch.setattr(cost, "_PEAK_CACHE", {})
    cost.cached_cpu_peak()
    assert len(calls) == 2


def test_memory_section_replays_the_plans_release_points(tmp_path):
    """The model's values: Add 2x48, Reshape (a view of it), Conv 2x5x4x4, Relu 2x5x4x4, in
    float32.  The plan releases the Add's value after Reshape (the view then holds it) and the
    view after Conv, the Conv's value after Relu; the output stays."""
    path = _ours(tmp_path, runs=3)
    s = summarize(path)
    add, conv = 2 * 48 * 4, 2 * 5 * 4 * 4 * 4
    alive = [add, add, add + conv, conv + conv]  # bytes alive during each step, in plan order
    assert s.memory["runs"] == 3
    assert s.memory["planned_peak_bytes"] == max(alive)
    assert s.memory["naive_bytes"] == add + conv + conv
    assert s.memory["parameter_bytes"] == 48 * 4 + 4 * 8 + 5 * 3 * 3 * 3 * 4
    assert s.memory["input_bytes"] == FEED["x"].nbytes
    text = ortgpu.profiling.format_table(s)
    assert re.search(r"memory: values alive at once at most 0\.00 MiB .* against 0\.00 MiB", text)
    page = render_html(s, path)
    assert "<h2>Memory</h2>" in page and f'data-v="{max(alive)}"' in page


def test_memory_section_shows_a_providers_arena(tmp_path):
    from ortgpu.providers.cpu import CPUExecutionProvider

    class WithArena(CPUExecutionProvider):  # the counters a device provider's arena reports
        def memory_stats(self):
            return {"bytes_in_use": 0, "max_bytes_in_use": 3 << 20, "bytes_reserved": 4 << 20, "num_allocs": 7,
                    "mem_pattern": {"last_plan": {"peak": 1 << 20, "lower_bound": 1 << 19, "naive_sum": 2 << 20,
                                                  "tensors": 5}}}
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "arena")
    sess = ortgpu.InferenceSession(_model().SerializeToString(), so, providers=[WithArena()])
    sess.run(None, FEED)
    s = summarize(sess.end_profiling())
    arena = s.memory[f"arena {WithArena().name}"]
    assert arena["max_bytes_in_use"] == 3 << 20 and arena["bytes_reserved"] == 4 << 20
    assert arena["pattern_peak"] == 1 << 20 and arena["pattern_tensors"] == 5
    text = ortgpu.profiling.format_table(s)
    assert "max bytes in use 3.00 MiB" in text and "num allocs 7" in text
    theirs = [e for e in json.load(open(s.trace)) if e.get("name") != "session_initialization"]
    assert not summarize(theirs).memory and not ortgpu.profiling.summary.memory_lines(summarize(theirs))
