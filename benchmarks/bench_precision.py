"""float16 (and bfloat16) against float32 in ortgpu, same provider, same run, with accuracy beside the times.

    python benchmarks/bench_precision.py [--provider cuda|cpu] [--precisions fp16] [--runs N] [--warmup N]
                                         [--batches 1,32] [--models resnet50,bert_base,gpt2_decode] [--json OUT]

Models (tests/transformer_models.py, random weights, exported with torch): ResNet-50 (224x224),
BERT-base (sequence 128), GPT-2 decode step (one new token, KV cache of 128 tokens). For each
model and batch, two sessions on the same provider: the float32 model as is, and the same file
with ``ortgpu.precision`` = fp16 (graph inputs and outputs stay float32).  Printed per row:

- ``fp32 ms`` / ``fp16 ms``: median wall time of ``session.run()`` with NumPy feeds over
  ``--runs`` after ``--warmup`` (on CUDA this includes the host/device copies run() makes);
- ``speedup`` = fp32 ms / fp16 ms (the peer is the float32 session measured in the same run);
- the accuracy that matters for the model, fp16 against fp32 on the same feeds: ResNet-50 top-1
  agreement and logits cosine; BERT-base mean-pooled embedding cosine (minimum over the batch);
  GPT-2 next-token agreement and logits cosine; plus the largest absolute difference.

Target (issue 7): BERT-base batch 32 in fp16 at least 1.8x faster than fp32 on the same GPU, with
embedding cosine similarity above 0.999.  On the CPU provider (``--provider cpu``) only the
accuracy columns mean anything: NumPy has no fast float16 arithmetic, so fp16 is slower there.

With ``--provider cuda`` and no usable GPU it prints why and exits with 2.  NOT YET RUN ON A GPU:
the CUDA rows are written without a device.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from common import device_name, median_time, write_json  # noqa: E402

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def _cosine(a, b) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def accuracy(name: str, feed: dict, ref: np.ndarray, got: np.ndarray) -> dict:
    """The metrics that matter for `name`, narrow output `got` against float32 `ref`."""
    out = {"max_abs_diff": float(np.abs(got.astype(np.float64) - ref).max())}
    if name == "bert_base":
        m = feed["attention_mask"][..., None].astype(np.float64)
        pooled = [(x.astype(np.float64) * m).sum(1) / m.sum(1) for x in (got, ref)]
        out["embedding_cosine_min"] = float(_cosine(*pooled).min())
    else:
        logits_g, logits_r = got.reshape(len(got), -1), ref.reshape(len(ref), -1)
        key = "next_token_agreement" if name == "gpt2_decode" else "top1_agreement"
        out[key] = float(np.mean(logits_g.argmax(1) == logits_r.argmax(1)))
        out["logits_cosine_min"] = float(_cosine(got, ref).min())
    return out


def bench_one(tm, name: str, batch: int, provider: str, precision: str, runs: int, warmup: int) -> dict:
    import ortgpu  # noqa: PLC0415
    path = tm.export(name)
    feed = tm.make_inputs(name, batch=batch)
    first = tm.output_names(name)[:1]
    fp32 = ortgpu.InferenceSession(path, providers=[provider])
    so = ortgpu.SessionOptions()
    so.add_session_config_entry("ortgpu.precision", precision)
    t0 = time.perf_counter()
    narrow = ortgpu.InferenceSession(path, so, providers=[provider])
    create_s = time.perf_counter() - t0
    ref, got = fp32.run(first, feed)[0], narrow.run(first, feed)[0]
    fp32_ms = median_time(lambda: fp32.run(None, feed), runs, warmup) * 1e3
    narrow_ms = median_time(lambda: narrow.run(None, feed), runs, warmup) * 1e3
    report = narrow.get_precision_report()
    return {"model": name, "batch": batch, "provider": provider, "precision": precision,
            "fp32_ms": fp32_ms, "narrow_ms": narrow_ms, "speedup": fp32_ms / narrow_ms,
            "session_create_s": create_s, "kept_float32": len(report.kept_float32), "casts": report.casts,
            **accuracy(name, feed, ref, got)}


def _accuracy_text(r: dict) -> str:
    keys = ("embedding_cosine_min", "top1_agreement", "next_token_agreement", "logits_cosine_min")
    return ", ".join(f"{k} {r[k]:.7f}" for k in keys if k in r)


def _environment(provider: str) -> dict:
    import onnx  # noqa: PLC0415
    env = {"date": datetime.date.today().isoformat(), "provider": provider, "numpy": np.__version__,
           "onnx": onnx.__version__, "python": platform.python_version(),
           "host": f"{platform.machine()} {os.cpu_count()} cores"}
    if provider == PROVIDERS["cuda"]:
        import cupy  # noqa: PLC0415
        env["device"] = device_name(cupy)
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--provider", choices=sorted(PROVIDERS), default="cuda")
    ap.add_argument("--precisions", default="fp16", help="comma-separated: fp16, bf16")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--models", default="resnet50,bert_base,gpt2_decode")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    provider = PROVIDERS[args.provider]
    if args.provider == "cuda":
        from bench_gpu import gpu_problem  # noqa: PLC0415
        problem = gpu_problem()
        if problem:
            print(f"bench_precision: cannot run on CUDA here: {problem}. Try --provider cpu for the "
                  f"accuracy columns.", file=sys.stderr)
            return 2
    from support import transformer_models as tm  # noqa: PLC0415

    env = _environment(provider)
    print(f"{env.get('device', env['host'])}, {provider}, runs {args.runs} after {args.warmup} warm-up")
    print("| model | batch | precision | fp32 ms | narrow ms | speedup | accuracy (narrow vs fp32) | max abs diff |")
    print("|---|---:|---|---:|---:|---:|---|---:|")
    rows, failures = [], []
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for precision in args.precisions.split(","):
                try:
                    r = bench_one(tm, name, batch, provider, precision, args.runs, args.warmup)
                except Exception as e:  # noqa: BLE001 - one model failing must not hide the others
                    traceback.print_exc()
                    failures.append({"model": name, "batch": batch, "precision": precision,
                                     "error": f"{type(e).__name__}: {e}"})
                    print(f"| {name} | {batch} | {precision} | failed: {type(e).__name__} |", flush=True)
                    continue
                rows.append(r)
                print(f"| {name} | {batch} | {precision} | {r['fp32_ms']:.2f} | {r['narrow_ms']:.2f} | "
                      f"{r['speedup']:.2f}x | {_accuracy_text(r)} | {r['max_abs_diff']:.3g} |", flush=True)
    target = [r for r in rows if r["model"] == "bert_base" and r["batch"] == 32 and r["precision"] == "fp16"]
    for r in target:
        ok = r["speedup"] >= 1.8 and r["embedding_cosine_min"] > 0.999
        print(f"\ntarget BERT-base batch 32 fp16 >= 1.8x with cosine > 0.999: {r['speedup']:.2f}x, "
              f"cosine {r['embedding_cosine_min']:.6f} on {provider}: {'met' if ok else 'NOT met'}")
    if args.json:
        write_json(args.json, {**env, "runs": args.runs, "warmup": args.warmup, "results": rows,
                               "failures": failures}, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
