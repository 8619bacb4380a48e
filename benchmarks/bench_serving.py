"""Serving throughput and latency: ``ortgpu serve`` with ortgpu as the backend against the same
server code with onnxruntime as the backend, dynamic batching on and off, a CNN and a BERT-shaped
model (built locally by tests/serving_models.py), client concurrency 1, 8, 32 and 64.

Loopback only (127.0.0.1, free ports); bounded: each cell stops after ``--requests`` requests or
``--seconds`` seconds, whichever comes first; each server is stopped with SIGTERM. The client is
tritonclient's HTTP client with binary tensor data, one client and connection per concurrent
caller (threads of this process; on a 2-core machine they compete with the server for the CPU:
the numbers are for comparing rows measured together, not absolutes).

    python benchmarks/bench_serving.py [--requests 300] [--seconds 8] [--out results/DATE-serving.json]
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import common  # noqa: E402
from support import serving_models as sm  # noqa: E402

HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 32, 64)
BATCH_CONFIG = sm.batching_config(max_batch_size=8, delay_us=2000, max_queue_size=256, preferred=(8,))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_repository(root: str) -> dict:
    sm.write_model(root, "cnn", sm.cnn(size=32), config=BATCH_CONFIG)
    sm.write_model(root, "bert", sm.bert_like(), config=BATCH_CONFIG)
    rng = np.random.default_rng(0)
    return {"cnn": {"images": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)},
            "bert": sm.bert_inputs(1)}


def start_server(root: str, backend: str, batching: bool):
    port = free_port()
    cmd = [sys.executable, "-c", "import sys, ortgpu.cli; sys.exit(ortgpu.cli.main())", "serve", root,
           "--host", HOST, "--http-port", str(port), "--no-grpc", "--backend", backend, "--max-queue-size", "256"]
    if not batching:
        cmd.append("--no-batching")
    log = open(os.path.join(root, f"server-{backend}-{int(batching)}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=5) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


def stop_server(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_cell(port: int, model: str, feeds: dict, concurrency: int, requests: int, seconds: float) -> dict:
    """`concurrency` client threads, each with its own tritonclient HTTP client (one connection),
    sending the same binary request until `requests` are sent or `seconds` have passed."""
    import tritonclient.http as httpclient

    def make_inputs():
        inputs = []
        for name, value in feeds.items():
            inp = httpclient.InferInput(name, list(value.shape), "FP32" if value.dtype == np.float32 else "INT64")
            inp.set_data_from_numpy(value, binary_data=True)
            inputs.append(inp)
        return inputs
    warm = httpclient.InferenceServerClient(f"{HOST}:{port}")
    for _ in range(4):                                  # warm-up, not timed
        warm.infer(model, make_inputs())
    warm.close()

    class Caller:  # one client per thread
        def __init__(self):
            self.client = httpclient.InferenceServerClient(f"{HOST}:{port}", network_timeout=120.0)
            self.inputs = make_inputs()

        def __call__(self):
            return self.client.infer(model, self.inputs)

        def close(self):
            self.client.close()
    # failures are counted (503 when the queue is full)
    done = common.concurrent_calls(Caller, requests, concurrency, seconds=seconds, count_errors=True)
    lat, wall = sorted(done.latencies), done.seconds
    return {"requests": len(lat), "errors": done.errors, "seconds": round(wall, 3),
            "throughput": round(len(lat) / wall, 1) if wall else 0.0,
            "p50_ms": round(1e3 * statistics.median(lat), 2) if lat else None,
            "p99_ms": round(1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2) if lat else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per cell at most")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per cell at most")
    ap.add_argument("--backends", default="ortgpu,onnxruntime")
    ap.add_argument("--out", default=os.path.join(HERE, "results", f"{datetime.date.today()}-serving.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        feeds = make_repository(root)
        for backend in args.backends.split(","):
            for batching in (True, False):
                proc, port = start_server(root, backend, batching)
                try:
                    for model in ("cnn", "bert"):
                        for c in CONCURRENCY:
                            cell = run_cell(port, model, feeds[model], c, args.requests, args.seconds)
                            row = {"backend": backend, "batching": batching, "model": model, "concurrency": c, **cell}
                            rows.append(row)
                            print(f"{backend:11s} batching={'on ' if batching else 'off'} {model:4s} c={c:<3d} "
                                  f"{cell['throughput']:8.1f} inf/s  p50 {cell['p50_ms']} ms  p99 {cell['p99_ms']} ms"
                                  f"  ({cell['requests']} ok, {cell['errors']} errors)", flush=True)
                finally:
                    stop_server(proc)
    print_table(rows)
    common.write_json(args.out, {"machine": common.machine(), "commit": common.git_commit(),
                                 "date": str(datetime.date.today()), "requests": args.requests,
                                 "seconds": args.seconds, "rows": rows})
    print(f"wrote {args.out}")
    return 0


def print_table(rows) -> None:
    print("\n| model | concurrency | batching | ortgpu inf/s | ortgpu p50 / p99 ms | onnxruntime inf/s | onnxruntime p50 / p99 ms |")
    print("|---|---:|---|---:|---:|---:|---:|")
    key = {(r["backend"], r["batching"], r["model"], r["concurrency"]): r for r in rows}
    for model in ("cnn", "bert"):
        for c in CONCURRENCY:
            for batching in (True, False):
                cells = []
                for backend in ("ortgpu", "onnxruntime"):
                    r = key.get((backend, batching, model, c))
                    cells += ([f"{r['throughput']:.1f}", f"{r['p50_ms']} / {r['p99_ms']}"] if r else ["-", "-"])
                print(f"| {model} | {c} | {'on' if batching else 'off'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
