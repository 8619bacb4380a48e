"""Throughput of one session shared by N caller threads, against one thread, ortgpu and
onnxruntime in the same run (the "8 threads on one session" setting of issue 17).

    python benchmarks/bench_threads.py [--threads 8] [--runs 256] [--model squeezenet|bert] [--json OUT]
    python benchmarks/bench_threads.py --inter-op 2 [--model inception_v1] [--runs 20]

Each runtime runs the same `runs` calls twice: serially on one thread, then spread over
`threads` caller threads on the same session; the outputs of the threaded runs must equal the
serial ones bit for bit (checked, an error otherwise).  Throughput is runs per second.

With ``--inter-op N``: one caller, the median latency of a run with ``execution_mode``
ORT_SEQUENTIAL against ORT_PARALLEL with ``inter_op_num_threads = N``, each runtime, the two
modes alternating run by run so that both see the same load; the parallel outputs must equal
the sequential ones bit for bit for ortgpu (onnxruntime's are compared with a tolerance: its
parallel executor may sum in another order).
"""
from __future__ import annotations

import argparse
import datetime
import functools
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import concurrent_calls, git_commit, load_average, machine, write_json  # noqa: E402


def _case(name: str):
    import onnx.backend.test as suite
    if name in ("squeezenet", "inception_v1"):
        path = os.path.join(os.path.dirname(suite.__file__), "data", "light", f"light_{name}.onnx")
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


def _modes(lib, path, feed, runs: int, inter_op: int):
    """(median ms sequential, median ms parallel, the two modes' outputs) for one runtime."""
    sessions = []
    for parallel in (False, True):
        so = lib.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1  # the same BLAS threads in both modes
        if parallel:
            so.execution_mode = lib.ExecutionMode.ORT_PARALLEL
            so.inter_op_num_threads = inter_op
        sessions.append(lib.InferenceSession(path, so, providers=["CPUExecutionProvider"]))
    outs = [s.run(None, feed) for s in sessions]  # warm-up
    times: list[list[float]] = [[], []]
    for _ in range(runs):
        for i, s in enumerate(sessions):
            t0 = time.perf_counter()
            s.run(None, feed)
            times[i].append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3, outs


def main_inter_op(args) -> int:
    import onnxruntime as ort

    import ortgpu
    path, feed = _case(args.model)
    load = {"before": load_average()}
    print(f"model {args.model}, one caller, ORT_SEQUENTIAL vs ORT_PARALLEL ({args.inter_op} inter-op threads), "
          f"load before: {load['before']}")
    out = {}
    for name, lib in (("ortgpu", ortgpu), ("onnxruntime", ort)):
        seq, par, (a, b) = _modes(lib, path, feed, args.runs, args.inter_op)
        if name == "ortgpu":
            same = all(np.array_equal(x, y) for x, y in zip(a, b))
        else:
            same = all(np.allclose(x, y, rtol=1e-4, atol=1e-5) for x, y in zip(a, b))
        out[name] = {"sequential_ms": seq, "parallel_ms": par, "outputs_agree": same}
        print(f"{name}: sequential {seq:.2f} ms, parallel {par:.2f} ms ({seq / par:.2f}x faster), "
              f"outputs agree: {same}", flush=True)
        if not same:
            print(f"error: {name}'s parallel outputs differ from its sequential ones", file=sys.stderr)
            return 1
    load["after"] = load_average()
    print(f"load after: {load['after']}")
    if args.json:
        write_json(args.json, {"date": datetime.date.today().isoformat(), "commit": git_commit(),
                               "machine": machine(), "load": load, "model": args.model,
                               "inter_op_num_threads": args.inter_op, "runs": args.runs, "results": out}, indent=2)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--runs", type=int, default=256)
    ap.add_argument("--model", default=None, choices=("bert", "squeezenet", "inception_v1"),
                    help="default: bert, or inception_v1 with --inter-op")
    ap.add_argument("--inter-op", type=int, default=0,
                    help="compare ORT_SEQUENTIAL with ORT_PARALLEL on this many inter-op threads")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.inter_op:
        args.model = args.model or "inception_v1"
        return main_inter_op(args)
    args.model = args.model or "bert"
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
