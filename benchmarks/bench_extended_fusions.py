"""What the extended fusions do to real models on the CPU provider, measured in one run.

    python benchmarks/bench_extended_fusions.py [--models bert_base,gpt2_decode,...] [--runs N] [--json OUT]

For each model: plan steps (each step is one kernel call) at ORT_DISABLE_ALL, at
ORT_ENABLE_ALL without the extended fusions and at ORT_ENABLE_ALL, the fused nodes, and
median CPU latencies (batch 1) with ratios against ORT_DISABLE_ALL and against the run
without the fusions (the three variants timed in turns).  "GPU steps" places the same
optimized graph with the CUDA provider first (the partitioner only: no device is needed):
steps on CUDA are kernel calls of at least one launch each; host shape steps launch nothing.  Transformer models are exported with torch
(tests/transformer_models.py, needs torch and transformers); PP-OCRv4 det comes from the
model zoo.  Latencies are only comparable inside one run: the ratios are the result.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import ortgpu  # noqa: E402
from ortgpu.optimizer import EXTENDED_PASSES  # noqa: E402

TRANSFORMERS = ("bert_base", "gpt2_decode", "vit_base", "resnet50")
DEFAULT = ("bert_base", "gpt2_decode", "vit_base", "resnet50", "ppocrv4_det")
VARIANTS = {   # name: (level, disabled passes)
    "disable_all": ("ORT_DISABLE_ALL", ()),
    "no_extended": ("ORT_ENABLE_ALL", tuple(EXTENDED_PASSES)),
    "enable_all": ("ORT_ENABLE_ALL", ()),
}


def model_and_feed(name: str):
    if name in TRANSFORMERS:
        from support import transformer_models as tm  # noqa: PLC0415
        return tm.export(name), tm.make_inputs(name, batch=1)
    from support import model_zoo  # noqa: PLC0415
    return model_zoo.model_path(name), {"x": model_zoo.image_input((1, 3, 480, 640))}


def interleaved_ms(fns: dict, runs: int) -> dict:
    """Median milliseconds of each function, timed in turns (one warm-up call each) so that
    a change of the machine's load hits every variant alike."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


FUSED_OPS = ("Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "FusedConv",
             "FusedGemm", "LayerNormalization")


def gpu_placement(path: str, level: str, disabled) -> dict:
    """Steps on CUDA, steps on the CPU and copies when the CUDA provider comes first."""
    from ortgpu.graph import from_proto  # noqa: PLC0415
    from ortgpu.loading import prepare_model  # noqa: PLC0415
    from ortgpu.optimizer import optimize  # noqa: PLC0415
    from ortgpu.partition import Copy, partition  # noqa: PLC0415
    from ortgpu.providers.cpu import CPUExecutionProvider  # noqa: PLC0415
    from ortgpu.providers.cuda import CUDAExecutionProvider  # noqa: PLC0415
    so = ortgpu.SessionOptions()
    model, _ = prepare_model(path, so._free_dims_by_name, so._free_dims_by_denotation)
    opsets = {("" if i.domain == "ai.onnx" else i.domain): i.version for i in model.opset_import}
    graph = from_proto(model.graph, opsets)
    providers = [CUDAExecutionProvider(device_count=None), CPUExecutionProvider()]
    optimize(graph, getattr(ortgpu.GraphOptimizationLevel, level), providers, set(), frozenset(disabled))
    items = partition(graph, providers).items
    copies = sum(isinstance(it, Copy) for it in items)
    gpu = sum(not isinstance(it, Copy) and it.provider.device == "cuda" for it in items)
    return {"gpu_steps": gpu, "cpu_steps": len(items) - copies - gpu, "copies": copies}


def measure(name: str, runs: int) -> dict:
    path, feed = model_and_feed(name)
    out, sessions = {}, {}
    for variant, (level, disabled) in VARIANTS.items():
        so = ortgpu.SessionOptions()
        so.graph_optimization_level = getattr(ortgpu.GraphOptimizationLevel, level)
        sess = ortgpu.InferenceSession(path, so, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=list(disabled))
        ops = [op for _, op, _ in sess.get_provider_assignment()]
        fused = {op: n for op, n in collections.Counter(ops).items() if op in FUSED_OPS}
        out[variant] = {"steps": len(ops), "fused": fused, **gpu_placement(path, level, disabled)}
        sessions[variant] = sess
    ms = interleaved_ms({v: (lambda s=s: s.run(None, feed)) for v, s in sessions.items()}, runs)
    base, plain = out["disable_all"], out["no_extended"]
    for v, r in out.items():
        r["ms"] = ms[v]
    for v in out.values():
        v["steps_ratio_vs_disable_all"] = base["steps"] / v["steps"]
        v["speedup_vs_disable_all"] = base["ms"] / v["ms"]
        v["speedup_vs_no_extended"] = plain["ms"] / v["ms"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    results = {}
    print("| model | variant | steps | steps DISABLE_ALL / steps | GPU steps (CPU, copies) | ms | "
          "speedup vs DISABLE_ALL | speedup vs no fusions | fused nodes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        results[name] = measure(name, args.runs)
        for variant, r in results[name].items():
            print(f"| {name} | {variant} | {r['steps']} | {r['steps_ratio_vs_disable_all']:.2f}x | "
                  f"{r['gpu_steps']} ({r['cpu_steps']}, {r['copies']}) | {r['ms']:.1f} | {r['speedup_vs_disable_all']:.2f}x | {r['speedup_vs_no_extended']:.2f}x | "
                  f"{r['fused']} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.platform(), "processor": platform.processor(),
                       "cpus": os.cpu_count(), "runs": args.runs, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
