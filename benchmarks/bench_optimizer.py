"""Graph optimization levels: nodes, kernel launches and latency at each level, per model.

    python benchmarks/bench_optimizer.py [--devices cpu,cuda] [--models ...] [--runs N] [--json OUT]

Models: BERT-base (sequence 128), the GPT-2 decode step (128 cached tokens) and ResNet-50, exported
with torch by tests/transformer_models.py (skipped, with a note, without torch and transformers),
and PP-OCRv4 det (tests/support/model_zoo.py, 1x3x480x640).  Batch 1.

For each level (ORT_DISABLE_ALL, ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED, ORT_ENABLE_LAYOUT,
ORT_ENABLE_ALL) it prints
  nodes     the nodes of the optimized graph, subgraphs included (copy steps excluded),
  launches  the steps one run executes, counted from a profiled run (a subgraph's steps count
            each time it runs; copies between devices count): on the GPU each step launches at
            least one kernel, so this is the launch count the optimizer controls,
  ms        the median latency of `run()` after warm-up (feeds from and outputs to the host),
and the ratio of each to ORT_DISABLE_ALL.  Latencies are taken in alternation with an
ORT_DISABLE_ALL session of the same model (one run of each, in turn), so that a busy machine
slows both alike; the speedup is the ratio of the two medians.  Passes added to the level
tables later (extended fusions, layout) are picked up without changes here.

`--devices cuda` runs on CUDAExecutionProvider (with the CPU as fallback) when it is available,
else it says so and skips; scripts/gpu-check.sh runs it that way on the GPU machine.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import ortgpu
from ortgpu.profiling.trace import read_trace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from common import git_commit, machine, write_json  # noqa: E402

Level = ortgpu.GraphOptimizationLevel
LEVELS = [Level.ORT_DISABLE_ALL, Level.ORT_ENABLE_BASIC, Level.ORT_ENABLE_EXTENDED, Level.ORT_ENABLE_LAYOUT,
          Level.ORT_ENABLE_ALL]
MODELS = ("bert_base", "gpt2_decode", "resnet50", "ppocrv4_det")
PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def model_and_feeds(name: str):
    """(path, feeds) for `name`, or (None, reason) when it cannot be had here."""
    if name == "ppocrv4_det":
        from support.model_zoo import image_input, model_path  # noqa: PLC0415
        return model_path(name), {"x": image_input((1, 3, 480, 640))}
    try:
        import torch  # noqa: F401,PLC0415
        import transformers  # noqa: F401,PLC0415
    except ImportError as e:
        return None, f"needs torch and transformers to export it ({e.name} is missing)"
    from support import transformer_models as tm  # noqa: PLC0415
    return tm.export(name), tm.make_inputs(name, batch=1)


def _options(level, profile_prefix=None) -> ortgpu.SessionOptions:
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = level
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def count_launches(path, feeds, level, providers) -> int:
    """Steps executed by one run, from a profiled session's trace (subgraph runs included)."""
    with tempfile.TemporaryDirectory() as d:
        sess = ortgpu.InferenceSession(path, _options(level, os.path.join(d, "p")), providers=providers)
        sess.run(None, feeds)
        events = read_trace(sess.end_profiling())
    return sum(1 for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))


def alternating_ms(fns, runs: int, warmup: int = 2) -> list[float]:
    """Median milliseconds of each function, timed one call of each in turn."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(runs):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) * 1e3 for ts in times]


def measure(name: str, path, feeds, device: str, runs: int) -> list[dict]:
    providers = PROVIDERS[device]
    t0 = time.perf_counter()
    base = ortgpu.InferenceSession(path, _options(Level.ORT_DISABLE_ALL), providers=providers)
    base_create_s = time.perf_counter() - t0
    rows = []
    for level in LEVELS:
        t0 = time.perf_counter()
        sess = base if level == Level.ORT_DISABLE_ALL else ortgpu.InferenceSession(path, _options(level),
                                                                                    providers=providers)
        create_s = time.perf_counter() - t0 if sess is not base else base_create_s
        steps = sess.get_provider_assignment(include_subgraphs=True)
        ops = collections.Counter(op for _, op, _ in steps if not op.startswith("Memcpy"))
        if sess is base:
            base_ms = ms = alternating_ms([lambda: base.run(None, feeds)], runs)[0]
        else:
            base_ms, ms = alternating_ms([lambda: base.run(None, feeds), lambda: sess.run(None, feeds)], runs)
        rows.append({"model": name, "device": device, "level": level.name, "nodes": sum(ops.values()),
                     "launches": count_launches(path, feeds, level, providers), "ms": ms,
                     "disable_all_ms": base_ms, "speedup": base_ms / ms, "session_s": create_s,
                     "top_ops": dict(ops.most_common(8))})
        del sess
    for r in rows:
        r["launches_ratio"] = rows[0]["launches"] / r["launches"] if r["launches"] else float("nan")
    return rows


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        print(f"| {r['model']} | {r['device']} | {r['level']} | {r['nodes']} | {r['launches']} | "
              f"{r['launches_ratio']:.2f}x | {r['ms']:.1f} | {r['speedup']:.2f}x | {r['session_s']:.1f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cpu", help="comma-separated: cpu, cuda")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)

    devices = [d for d in args.devices.split(",") if d]
    if "cuda" in devices and "CUDAExecutionProvider" not in ortgpu.get_available_providers():
        print("note: CUDAExecutionProvider is not available here: the cuda rows are skipped")
        devices.remove("cuda")
    print("| model | device | level | nodes | launches | fewer launches | ms | speedup | session s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    rows, notes = [], {}
    for name in args.models.split(","):
        path, feeds = model_and_feeds(name)
        if path is None:
            notes[name] = feeds
            print(f"note: {name} skipped: {feeds}")
            continue
        for device in devices:
            part = measure(name, path, feeds, device, args.runs)
            print_rows(part)
            rows.extend(part)
    if args.json:
        write_json(args.json, {"date": datetime.date.today().isoformat(), "commit": git_commit(),
                               "machine": machine(), "device": ortgpu.get_device(), "numpy": np.__version__,
                               "runs": args.runs, "rows": rows, "skipped": notes}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
