"""EliminateSlice: a Slice that keeps every element leaves the graph; one that cuts stays."""
import numpy as np
import pytest
from onnx import helper

from support.pass_check import INT64, check_outputs, init, model, ops, run_pass

BIG = np.iinfo(np.int64).max


def _slice_model(starts, ends, axes, steps=None, shape=("N", 4)):
    inits = [init("s", np.int64(starts)), init("e", np.int64(ends)), init("a", np.int64(axes))]
    ins = ["x", "s", "e", "a"]
    if steps is not None:
        inits.append(init("p", np.int64(steps)))
        ins.append("p")
    return model([helper.make_node("Slice", ins, ["c"]), helper.make_node("Neg", ["c"], ["y"])],
                 [("x", 1, list(shape))], [("y", 1, None)], inits)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([0], [BIG], [0], None),            # the exporters' "to the end"
    ([0], [4], [1], [1]),               # the static dim
    ([-4, 0], [10, BIG], [1, 0], None),  # start at -dim, end past the dim
], ids=["to_the_end", "static_dim", "negative_start"])
def test_slice_that_keeps_everything_goes(starts, ends, axes, steps):
    m = _slice_model(starts, ends, axes, steps)
    graph, n = run_pass(m, "EliminateSlice")
    assert n == 1 and ops(graph) == ["Neg"]
    check_outputs(m, {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}, "EliminateSlice")


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [BIG], [1], None),    # cuts the first column
    ([0], [3], [1], None),      # cuts the last column
    ([0], [3], [0], None),      # the dim is symbolic: 3 may cut
    ([0], [BIG], [1], [2]),     # every other column
    ([-1], [-BIG], [1], [-1]),  # reverses
], ids=["start", "end", "symbolic_dim", "step", "reverse"])
def test_slice_that_cuts_stays(starts, ends, axes, steps):
    m = _slice_model(starts, ends, axes, steps)
    graph, n = run_pass(m, "EliminateSlice")
    assert n == 0 and ops(graph) == ["Slice", "Neg"]
    check_outputs(m, {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}, "EliminateSlice")


def test_slice_with_computed_starts_stays():
    m = model([helper.make_node("Slice", ["x", "s", "e"], ["y"])], [("x", 1, [4]), ("s", INT64, [1])],
              [("y", 1, None)], [init("e", np.int64([BIG]))])
    assert run_pass(m, "EliminateSlice")[1] == 0
