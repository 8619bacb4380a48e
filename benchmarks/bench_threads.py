"""Throughput of one session shared by N caller threads, against one thread, ortgpu and
onnxruntime in the same run (the "8 threads on one session" setting of issue 17).

    python benchmarks/bench_threads.py [--threads 8] [--runs 256] [--model squeezenet|bert] [--json OUT]

Each runtime runs the same `runs` calls twice: serially on one thread, then spread over
`threads` caller threads on the same session; the outputs of the threaded runs must equal the
serial ones bit for bit (checked, an error otherwise).  Throughput is runs per second.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import concurrent_calls, git_commit, load_average, machine, write_json  # noqa: E402


def _case(name: str):
    import onnx.backend.test as suite
    if name == "squeezenet":
        path = os.path.join(os.path.dirname(suite.__file__), "data", "light", "light_squeezenet.onnx")
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        return path, {"data_0": x}
    d = os.path.join(HERE, "..", "tests", "data", "contrib")
    ids = np.random.default_rng(0).integers(0, 96, size=(4, 32)).astype(np.int64)
    return os.path.join(d, "bert_fp32.onnx"), {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                               "token_type_ids": np.zeros_like(ids)}


def _throughput(sess, feed, runs: int, threads: int):
    """(runs per second serially, runs per second over `threads` callers, outputs match)."""
    sess.run(None, feed)  # warm-up
    t0 = time.perf_counter()
    serial = [sess.run(None, feed) for _ in range(runs)]
    t_serial = time.perf_counter() - t0
    done = concurrent_calls(lambda: functools.partial(sess.run, None, feed), runs, threads)
    same = all(all(np.array_equal(a, b) for a, b in zip(r, s)) for r, s in zip(done.results, serial))
    return runs / t_serial, runs / done.seconds, same


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--runs", type=int, default=256)
    ap.add_argument("--model", default="bert", choices=("bert", "squeezenet"))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    import ortgpu
    path, feed = _case(args.model)
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 3
    out = {}
    load = {"before": load_average()}
    print(f"model {args.model}, load before: {load['before']}")
    for name, sess in (("ortgpu", ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"])),
                       ("onnxruntime", ort.InferenceSession(path, quiet, providers=["CPUExecutionProvider"]))):
        one, many, same = _throughput(sess, feed, args.runs, args.threads)
        out[name] = {"serial_runs_per_s": one, "threaded_runs_per_s": many, "identical": same}
        print(f"{name}: 1 thread {one:.1f} runs/s, {args.threads} threads {many:.1f} runs/s "
              f"({many / one:.2f}x), threaded outputs identical to serial: {same}", flush=True)
        if not same:
            print(f"error: {name}'s threaded outputs differ from its serial ones", file=sys.stderr)
            return 1
    load["after"] = load_average()
    ratio = out["ortgpu"]["threaded_runs_per_s"] / out["onnxruntime"]["threaded_runs_per_s"]
    print(f"{args.threads} threads, ortgpu / onnxruntime throughput: {ratio:.2f}x (load after: {load['after']})")
    if args.json:
        write_json(args.json, {"date": datetime.date.today().isoformat(), "commit": git_commit(),
                               "machine": machine(), "load": load, "model": args.model, "threads": args.threads,
                               "runs": args.runs, "results": out, "ratio_vs_onnxruntime": ratio}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
