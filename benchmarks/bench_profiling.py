"""Profiling overhead: the same model with ``enable_profiling`` on and off, runs interleaved.

    python benchmarks/bench_profiling.py [--runs N] [--providers P] [--json OUT] [--no-zoo]

For each model: median latency without and with profiling and the overhead in percent (the
target is at most 10% on the CPU provider for real models); then the per-node cost of
profiling on a chain of 1,000 small Add nodes, the worst case.  Also checks that the
unprofiled path of a session with profiling off is as fast as before (no profiling branch in
the run loop): that is the "off" column.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import ortgpu
from ortgpu.sample_inputs import make_inputs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cpu import add_chain, light_models, zoo_models  # noqa: E402


def _sessions(model, providers, folder):
    off = ortgpu.InferenceSession(model, providers=providers)
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(folder, "bench")
    on = ortgpu.InferenceSession(model, so, providers=providers)
    return off, on


def measure(model, feed, providers, runs: int, folder: str) -> tuple[float, float]:
    """Median seconds per run with profiling off and on, runs alternating between the two."""
    off, on = _sessions(model, providers, folder)
    if feed is None:
        feed = make_inputs(off)
    times = {id(off): [], id(on): []}
    for sess in (off, on, off, on):  # warm-up
        sess.run(None, feed)
    for _ in range(runs):
        for sess in (off, on):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times[id(sess)].append(time.perf_counter() - t0)
    on.end_profiling()
    return statistics.median(times[id(off)]), statistics.median(times[id(on)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--providers", default="CPUExecutionProvider")
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--no-zoo", action="store_true", help="skip the models fetched from pinned wheels")
    args = ap.parse_args(argv)
    providers = [p for p in args.providers.split(",") if p]
    cases = {k: (v, None) for k, v in light_models().items()}
    if not args.no_zoo:
        cases.update(zoo_models())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        print("| model | profiling off (ms) | on (ms) | overhead |")
        print("|---|---:|---:|---:|")
        for name, (model, feed) in cases.items():
            t_off, t_on = measure(model, feed, providers, args.runs, folder)
            rows.append({"model": name, "off_ms": t_off * 1e3, "on_ms": t_on * 1e3,
                         "overhead_pct": 100 * (t_on / t_off - 1)})
            print(f"| {name} | {t_off * 1e3:.2f} | {t_on * 1e3:.2f} | {100 * (t_on / t_off - 1):+.1f}% |",
                  flush=True)
        n = 1000
        t_off, t_on = measure(add_chain(n), None, providers, max(args.runs, 30), folder)
    per_node = {"off_us_per_node": t_off / n * 1e6, "on_us_per_node": t_on / n * 1e6}
    print(f"\nmedian overhead over the models: {statistics.median(r['overhead_pct'] for r in rows):+.1f}%")
    print(f"chain of {n} Add on 4 floats: {per_node['off_us_per_node']:.2f} us per node off, "
          f"{per_node['on_us_per_node']:.2f} us on (+{per_node['on_us_per_node'] - per_node['off_us_per_node']:.2f} us)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"providers": providers, "models": rows, "add_chain": per_node}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
