"""The optimize_model BERT / GPT-2 contrib models (tests/data/contrib, batch 4 x 32 tokens, fed as
bench_cpu.py feeds them), ortgpu's CPU provider against onnxruntime's, in one process:

    python benchmarks/bench_transformer_ops.py [--runs N] [--models bert_fp32,...] [--json OUT]

Whole model: the two runtimes' runs alternate, min and median of N each.  Per op type: a
profiled session of each runtime, the op type's time in each run (kernel events, "cat": "Node"),
min and median over N runs.  Timings on a shared machine come with the load average.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_cpu import contrib_models  # noqa: E402
from common import git_commit, load_average, write_json  # noqa: E402

import ortgpu  # noqa: E402
from ortgpu.profiling.trace import read_trace  # noqa: E402


def whole_model(mine, theirs, feed, runs: int) -> tuple[list[float], list[float]]:
    """Wall times (s) of both sessions, alternating run by run after two warm-ups each."""
    for _ in range(2):
        mine.run(None, feed)
        theirs.run(None, feed)
    a, b = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        mine.run(None, feed)
        t1 = time.perf_counter()
        theirs.run(None, feed)
        t2 = time.perf_counter()
        a.append(t1 - t0)
        b.append(t2 - t1)
    return a, b


def per_op_runs(path: str) -> dict[str, list[float]]:
    """Microseconds per op type in each model_run of a profile (a run without the op counts 0)."""
    x = [e for e in read_trace(path) if e.get("ph") == "X"]
    runs = sorted((e for e in x if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    totals = [collections.Counter() for _ in runs]
    for e in x:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        for i, r in enumerate(runs):
            if r["ts"] <= e["ts"] <= r["ts"] + r["dur"]:
                totals[i][e["args"].get("op_name", "?")] += e["dur"]
                break
    ops = set().union(*totals) if totals else set()
    return {op: [t[op] for t in totals] for op in ops}


def profiled(make, feed, runs: int, prefix: str) -> dict[str, list[float]]:
    sess = make(prefix)
    for _ in range(2):
        sess.run(None, feed)
    for _ in range(runs):
        sess.run(None, feed)
    path = sess.end_profiling()
    out = per_op_runs(path)
    # the warm-up runs are the first two model_run events
    return {op: v[2:] for op, v in out.items()}


def main(argv=None) -> int:
    import onnxruntime as ort
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--models", default="bert_fp32,bert_fp16,gpt2_fp32,gpt2_fp16")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    wanted = args.models.split(",")
    tmp = tempfile.mkdtemp(prefix="bench_transformer_")
    print(f"load before: {load_average()}; commit {git_commit()}; ORTGPU_JIT={os.environ.get('ORTGPU_JIT', '1')}")
    results = {}
    for name, (path, feed) in contrib_models().items():
        short = name.split()[0]
        if short not in wanted:
            continue
        mine = ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"])
        theirs = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        a, b = whole_model(mine, theirs, feed, args.runs)

        def make_mine(prefix):
            so = ortgpu.SessionOptions()
            so.enable_profiling = True
            so.profile_file_prefix = prefix
            return ortgpu.InferenceSession(path, so, providers=["CPUExecutionProvider"])

        def make_theirs(prefix):
            so = ort.SessionOptions()
            so.enable_profiling = True
            so.profile_file_prefix = prefix
            return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

        ops_a = profiled(make_mine, feed, args.runs, os.path.join(tmp, short + "_ortgpu"))
        ops_b = profiled(make_theirs, feed, args.runs, os.path.join(tmp, short + "_ort"))
        ms = lambda v: (min(v) * 1e3, statistics.median(v) * 1e3)  # noqa: E731
        print(f"\n{short}: ortgpu min {ms(a)[0]:.3f} median {ms(a)[1]:.3f} ms | onnxruntime min {ms(b)[0]:.3f} "
              f"median {ms(b)[1]:.3f} ms | median ratio {statistics.median(a) / statistics.median(b):.2f}x")
        print("  op type            ortgpu min/median us   onnxruntime min/median us")
        rows = []
        for op in sorted(set(ops_a) | set(ops_b), key=lambda o: -statistics.median(ops_a.get(o, [0]))):
            va, vb = ops_a.get(op, [0.0]), ops_b.get(op, [0.0])
            rows.append({"op": op, "ortgpu_us": [min(va), statistics.median(va)],
                         "onnxruntime_us": [min(vb), statistics.median(vb)]})
            print(f"  {op:<24} {min(va):8.0f} {statistics.median(va):8.0f}    {min(vb):8.0f} {statistics.median(vb):8.0f}")
        results[short] = {"ortgpu_ms": ms(a), "onnxruntime_ms": ms(b), "ops": rows}
    print(f"\nload after: {load_average()}")
    if args.json:
        write_json(args.json, {"commit": git_commit(), "load": load_average(), "runs": args.runs,
                               "models": results}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
