"""Per-iteration cost of Loop: nested Loops of 2 iterations around one Add (2**depth inner
iterations), ortgpu's CPU provider against onnxruntime's in the same run.

    python benchmarks/bench_loops.py [--depth 14] [--runs 3]
    python benchmarks/bench_loops.py --issue       # also issue 18's two cases (below)

Issue 18's cases, each timed once for both runtimes: 20 nested Loops of 2 iterations (2**21 - 2
iterations in all, 2**20 of them inner), and a loop-carried tensor that doubles every iteration
until memory runs out, run in a subprocess per runtime under an address-space limit
(--mem-gib, 4 by default) so that it fails quickly and spares the machine: the time to the
error, and the error's class.
"""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
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


def doubling(trips: int = 64) -> bytes:
    """A Loop whose carried tensor doubles each iteration (Concat with itself): 2**trips times
    its initial size, more than any memory holds."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c0"], ["c1"]), helper.make_node("Concat", ["v_in", "v_in"], ["v_out"], axis=0)],
        "body", [_f("i", [], TensorProto.INT64), _f("c0", [], TensorProto.BOOL), _f("v_in", None)],
        [_f("c1", [], TensorProto.BOOL), _f("v_out", None)])
    g = helper.make_graph([helper.make_node("Loop", ["M", "", "v0"], ["v"], body=body)], "g",
                          [_f("M", [], TensorProto.INT64), _f("v0", [None])], [_f("v", [None])],
                          [helper.make_tensor("M", TensorProto.INT64, [], [trips])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _until_memory_runs_out(runtime: str, mem_gib: float) -> dict:
    """In this (child) process: limit the address space, run the doubling model, report the
    time to the error and its class."""
    import resource  # noqa: PLC0415
    limit = int(mem_gib * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    feeds = {"v0": np.ones(1 << 20, np.float32)}
    if runtime == "numpy":  # the floor: the same doublings with np.concatenate alone
        run = functools.partial(_numpy_doublings, feeds["v0"])
    else:
        mod = ortgpu if runtime == "ortgpu" else onnxruntime
        run = functools.partial(mod.InferenceSession(doubling(), providers=["CPUExecutionProvider"]).run,
                                None, feeds)
    t0 = time.perf_counter()
    try:
        run()
        error, message = None, "no error"
    except Exception as e:  # noqa: BLE001 - the class is what is reported
        error, message = f"{type(e).__module__}.{type(e).__name__}", str(e)[:160]
    return {"runtime": runtime, "seconds": time.perf_counter() - t0, "error": error, "message": message}


def _numpy_doublings(v, trips: int = 64):
    for _ in range(trips):
        v = np.concatenate([v, v], axis=0)
    return v


def doubling_case(mem_gib: float) -> None:
    for runtime in ("onnxruntime", "ortgpu", "numpy"):
        out = subprocess.run([sys.executable, __file__, "--child", runtime, "--mem-gib", str(mem_gib)],
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            print(f"doubling tensor, {runtime}: the process died (exit {out.returncode}): {out.stderr[-300:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"doubling tensor under a {mem_gib:g} GiB address-space limit, {runtime}: "
              f"{r['seconds']:.2f} s to {r['error']}: {r['message']}")


def nested_case(depth: int) -> None:
    """One run of `depth` nested Loops in each runtime (issue 18: 20 levels)."""
    model = nested_loops(depth)
    feeds = {"M": np.array(2), "v0": np.zeros(1, np.float32)}
    times = {}
    for name, mod in (("onnxruntime", onnxruntime), ("ortgpu", ortgpu)):
        sess = mod.InferenceSession(model, providers=["CPUExecutionProvider"])
        t0 = time.perf_counter()
        assert sess.run(None, feeds)[0][0] == 2 ** depth
        times[name] = time.perf_counter() - t0
    print(f"{depth} nested Loops of 2 iterations ({2 ** (depth + 1) - 2} iterations, {2 ** depth} inner): "
          f"ortgpu {times['ortgpu']:.2f} s, onnxruntime {times['onnxruntime']:.2f} s, "
          f"ratio {times['ortgpu'] / times['onnxruntime']:.2f}x")


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
    ap.add_argument("--issue", action="store_true", help="also issue 18's two cases")
    ap.add_argument("--mem-gib", type=float, default=4.0, help="address-space limit of the doubling case")
    ap.add_argument("--child", choices=("ortgpu", "onnxruntime", "numpy"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_until_memory_runs_out(args.child, args.mem_gib)))
        return
    model = nested_loops(args.depth)
    feeds = {"M": np.array(2), "v0": np.zeros(1, np.float32)}
    ours = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    theirs = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert ours.run(None, feeds)[0][0] == theirs.run(None, feeds)[0][0] == 2 ** args.depth
    t_ours = t_theirs = float("inf")
    for _ in range(args.runs):  # interleaved, so that both see the same load of a shared machine
        t_ours = min(t_ours, best_time(ours, feeds, 1))
        t_theirs = min(t_theirs, best_time(theirs, feeds, 1))
    n = 2 ** args.depth
    print(f"{n} inner iterations: ortgpu {t_ours:.3f} s ({t_ours / n * 1e6:.1f} us each), "
          f"onnxruntime {t_theirs:.3f} s ({t_theirs / n * 1e6:.1f} us each), ratio {t_ours / t_theirs:.2f}x")
    if args.issue:
        nested_case(20)
        doubling_case(args.mem_gib)


if __name__ == "__main__":
    main()
