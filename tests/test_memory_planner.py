"""The static planner on random lifetimes and on tensor lifetimes recorded from real runs: no two
tensors alive together overlap, the peak lies between the lower bound and the naive sum, and
memory is reused.  Overlaps and bounds are recomputed here by brute force."""
import random

import numpy as np
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.memory import Interval, plan_offsets
from ortgpu.memory.lifetimes import run_lifetimes


def overlaps(intervals, plan):
    """Pairs of tensors alive at a common step whose byte ranges intersect."""
    bad = []
    for a in range(len(intervals)):
        for b in range(a + 1, len(intervals)):
            ia, ib = intervals[a], intervals[b]
            together = ia.first <= ib.last and ib.first <= ia.last
            oa, ob, sa, sb = plan.offsets[a], plan.offsets[b], plan.sizes[a], plan.sizes[b]
            if together and sa and sb and oa < ob + sb and ob < oa + sa:
                bad.append((a, b))
    return bad


def live_bytes_bound(intervals, alignment):
    """Max over steps of the rounded bytes alive, step by step."""
    rounded = [-(-iv.size // alignment) * alignment for iv in intervals]
    steps = range(min(iv.first for iv in intervals), max(iv.last for iv in intervals) + 1)
    return max(sum(r for iv, r in zip(intervals, rounded) if iv.first <= t <= iv.last) for t in steps)


def random_intervals(rng, n, steps):
    out = []
    for _ in range(n):
        first = rng.randrange(steps)
        last = min(steps - 1, first + int(rng.expovariate(1 / 4)))
        size = rng.choice([rng.randrange(0, 1000), rng.randrange(1000, 100_000), rng.randrange(100_000, 4 << 20)])
        out.append(Interval(size, first, last))
    return out


@pytest.mark.parametrize("alignment", [1, 256])
@pytest.mark.parametrize("seed", range(12))
def test_random_lifetimes_never_overlap_and_respect_the_bounds(seed, alignment):
    rng = random.Random(seed)
    intervals = random_intervals(rng, rng.randrange(1, 120), rng.randrange(1, 60))
    plan = plan_offsets(intervals, alignment)
    assert overlaps(intervals, plan) == []
    assert all(o % alignment == 0 for o in plan.offsets)
    assert plan.lower_bound == live_bytes_bound(intervals, alignment)
    assert plan.lower_bound <= plan.peak <= plan.naive_sum
    assert plan.peak == max(o + s for o, s in zip(plan.offsets, plan.sizes))


def test_a_chain_reuses_memory():
    # t_i is made at step i and read at step i+1: at most two are alive at once
    sizes = [4096 * (1 + (i * 7) % 5) for i in range(40)]
    intervals = [Interval(s, i, i + 1) for i, s in enumerate(sizes)]
    plan = plan_offsets(intervals)
    assert overlaps(intervals, plan) == []
    assert plan.peak <= 2 * max(sizes) and plan.peak < plan.naive_sum / 10
    assert len(set(plan.offsets)) < len(sizes)        # several tensors share an offset


def test_tensors_alive_together_stack_and_disjoint_ones_share():
    a, b = Interval(1000, 0, 5), Interval(3000, 2, 3)
    c = Interval(2000, 6, 8)                          # starts after both died
    plan = plan_offsets([a, b, c], alignment=1)
    assert plan.peak == 4000 == plan.lower_bound and plan.naive_sum == 6000
    assert plan.offsets[2] < 4000                     # c reuses their bytes
    with pytest.raises(ValueError):
        Interval(10, 3, 2)


def test_empty_plan():
    plan = plan_offsets([])
    assert plan.peak == plan.naive_sum == plan.lower_bound == 0 and plan.offsets == ()


# --- lifetimes recorded from runs of the CPU provider -------------------------------------------
def chain_with_a_view():
    """x -> Relu -> Reshape (a view of Relu's output) -> Neg -> Abs -> y"""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [6, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["v"], name="view"),
             helper.make_node("Neg", ["v"], ["n"], name="neg"),
             helper.make_node("Abs", ["n"], ["y"], name="abs")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 4])], [shape])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def cpu_session(model):
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ortgpu.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def test_lifetimes_of_a_chain_follow_views_to_their_last_reader():
    s = cpu_session(chain_with_a_view())
    x = np.arange(24, dtype=np.float32).reshape(4, 6) - 10
    intervals = run_lifetimes(s._core.plan, [x])
    ops = [st.node.op_type for st in s._core.plan.steps]
    relu, neg, abs_ = ops.index("Relu"), ops.index("Neg"), ops.index("Abs")
    # Relu's buffer lives until Neg read its Reshape view; Neg's until Abs; y to the end
    assert [(iv.size, iv.first, iv.last) for iv in intervals] == [
        (96, relu, neg), (96, neg, abs_), (96, abs_, len(ops) - 1)]
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], np.abs(-np.maximum(x, 0)).reshape(6, 4))


def random_graph(seed):
    """A random DAG of unary and binary element-wise ops on 8x16 tensors."""
    rng = random.Random(seed)
    values = [("x", [8, 16])]
    nodes = []
    for i in range(rng.randrange(5, 30)):
        op = rng.choice(["Relu", "Neg", "Sigmoid", "Add", "Mul", "Sub", "Max"])
        a = rng.choice(values[-6:])
        ins = [a[0]]
        if op in ("Add", "Mul", "Sub", "Max"):
            ins.append(rng.choice(values)[0])
        out = f"t{i}"
        nodes.append(helper.make_node(op, ins, [out], name=f"n{i}"))
        values.append((out, None))
    outs = {n.output[0] for n in nodes} - {i for n in nodes for i in n.input}
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in sorted(outs)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_plan_their_recorded_lifetimes(seed):
    model = random_graph(seed)
    s = cpu_session(model)
    x = np.random.default_rng(seed).standard_normal((8, 16)).astype(np.float32)
    intervals = run_lifetimes(s._core.plan, [x])
    assert len(intervals) == len(model.graph.node)            # every op made one fresh buffer
    assert all(iv.size == 8 * 16 * 4 for iv in intervals)
    plan = plan_offsets(intervals)
    assert overlaps(intervals, plan) == []
    assert plan.lower_bound == live_bytes_bound(intervals, 256) <= plan.peak <= plan.naive_sum
    if plan.lower_bound < plan.naive_sum:
        assert plan.peak < plan.naive_sum                     # reuse happened
    # the traced run computed what onnxruntime computes
    import onnxruntime as ort
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    for got, want in zip(s.run(names, {"x": x}), ref.run(names, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lifetimes_leave_the_plan_as_it_was():
    s = cpu_session(random_graph(1))
    fns = [st.fn for st in s._core.plan.steps]
    run_lifetimes(s._core.plan, [np.ones((8, 16), np.float32)])
    assert [st.fn for st in s._core.plan.steps] == fns
