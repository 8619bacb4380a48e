"""Per-iteration cost of Loop: nested Loops of 2 iterations around one Add (2**depth inner
iterations), ortgpu's CPU provider against onnxruntime's in the same run.

    python benchmarks/bench_loops.py [--depth 14] [--runs 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime
from onnx import TensorProto, helper

import ortgpu


def _f(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def nested_loops(depth: int, trips: int = 2) -> bytes:
    """`depth` nested Loops of `trips` iterations each around one Add: trips**depth additions."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c0"], ["c1"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])], "b0",
        [_f("i", [], TensorProto.INT64), _f("c0", [], TensorProto.BOOL), _f("v_in", [1])],
        [_f("c1", [], TensorProto.BOOL), _f("v_out", [1])], [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    for d in range(1, depth):
        body = helper.make_graph(
            [helper.make_node("Identity", [f"c0_{d}"], [f"c1_{d}"]),
             helper.make_node("Loop", [f"trip{d}", "", f"v_in{d}"], [f"v_out{d}"], body=body)], f"b{d}",
            [_f(f"i{d}", [], TensorProto.INT64), _f(f"c0_{d}", [], TensorProto.BOOL), _f(f"v_in{d}", [1])],
            [_f(f"c1_{d}", [], TensorProto.BOOL), _f(f"v_out{d}", [1])],
            [helper.make_tensor(f"trip{d}", TensorProto.INT64, [], [trips])])
    g = helper.make_graph([helper.make_node("Loop", ["M", "", "v0"], ["v"], body=body)], "g",
                          [_f("M", [], TensorProto.INT64), _f("v0", [1])], [_f("v", [1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def best_time(sess, feeds, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=14)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    model = nested_loops(args.depth)
    feeds = {"M": np.array(2), "v0": np.zeros(1, np.float32)}
    ours = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    theirs = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert ours.run(None, feeds)[0][0] == theirs.run(None, feeds)[0][0] == 2 ** args.depth
    t_ours, t_theirs = best_time(ours, feeds, args.runs), best_time(theirs, feeds, args.runs)
    n = 2 ** args.depth
    print(f"{n} inner iterations: ortgpu {t_ours:.3f} s ({t_ours / n * 1e6:.1f} us each), "
          f"onnxruntime {t_theirs:.3f} s ({t_theirs / n * 1e6:.1f} us each), ratio {t_ours / t_theirs:.2f}x")


if __name__ == "__main__":
    main()
