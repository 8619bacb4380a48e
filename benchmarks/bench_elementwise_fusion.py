"""ElementwiseChainFusion (and the other passes) by optimization level: node and step counts on any
machine, latency and kernel launches on a GPU, each against a peer measured in the same run.

    python benchmarks/bench_elementwise_fusion.py [--models bert_base,gpt2_decode,resnet50,ppocrv4_det]
                                                  [--gpu] [--runs N] [--warmup N] [--json OUT]

Counts (no GPU needed): each model is loaded, optimized at ORT_DISABLE_ALL, ORT_ENABLE_BASIC,
ORT_ENABLE_EXTENDED and ORT_ENABLE_ALL for the provider list [CUDAExecutionProvider, CPU]
(the CUDA provider is only asked what it would run: no device is touched) and partitioned;
the table gives the graph's nodes, the steps on the CUDA provider (each at least one kernel
launch), the steps on the CPU and the FusedElementwise nodes made.

GPU (``--gpu``, needs CuPy, a device, torch): per model and level, the plan runs with inputs
and outputs already on the device (no host copies), timed by CUDA events on the session's
stream (median of ``--runs``); ``kernels`` is the number of kernel launches per run that
CUPTI records (torch.profiler).  A micro case, bias + GELU (erf form, 6 ops) on
[rows, 3072] in float32 and float16, compares the fused kernel with the unfused ops and with
PyTorch eager running the same 6 ops (``ratio`` = ortgpu / torch).

Models come from tests/transformer_models.py (torch exports, cached) and tests/support/model_zoo.py.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]

from common import git_commit, write_json  # noqa: E402

LEVELS = {"disable_all": 0, "basic": 1, "extended": 2, "all": 99}
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def model_path(name: str) -> str:
    from support import transformer_models as tm
    if name in tm.MODELS:
        return tm.export(name)
    from support.model_zoo import model_path as zoo_path
    return zoo_path(name)


def model_inputs(name: str) -> dict:
    from support import transformer_models as tm
    if name in tm.MODELS:
        return tm.make_inputs(name)
    from support.model_zoo import image_input
    shapes = {"ppocrv4_det": (1, 3, 640, 640), "ppocrv4_rec": (1, 3, 48, 320), "ppocr_cls": (1, 3, 48, 192)}
    return {"x": image_input(shapes[name])}


# --- counts (any machine) -----------------------------------------------------------------------
def counts(path: str, level: int) -> dict:
    import ortgpu.kernels_loader  # noqa: F401  (registers the kernels)
    from ortgpu.graph import from_proto
    from ortgpu.loading import prepare_model
    from ortgpu.optimizer import optimize
    from ortgpu.partition import Placed, partition
    from ortgpu.providers.cpu import CPUExecutionProvider
    from ortgpu.providers.cuda import CUDAExecutionProvider
    model, _ = prepare_model(path)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    graph = from_proto(model.graph, opsets)
    providers = [CUDAExecutionProvider(device_count=None), CPUExecutionProvider()]
    t0 = time.perf_counter()
    done = optimize(graph, level, providers, set())
    seconds = time.perf_counter() - t0
    part = partition(graph, providers)
    where = collections.Counter(it.provider.device for it in part.items if isinstance(it, Placed))
    return {"nodes": len(graph.nodes), "cuda_steps": where.get("cuda", 0), "cpu_steps": where.get("cpu", 0),
            "fused": sum(1 for n in graph.nodes if n.op_type == "FusedElementwise"),
            "optimize_s": round(seconds, 3), "passes": {k: v for k, v in done.items() if v}}


# --- GPU ----------------------------------------------------------------------------------------
def device_runner(model_bytes: bytes, feeds: dict, level: int, disabled=()):
    """(run, session): run() executes the session's plan with inputs and outputs on the device."""
    import cupy

    import ortgpu
    from ortgpu.executor import Plan
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = level
    sess = ortgpu.InferenceSession(model_bytes, so, providers=[(CUDA, {"use_tf32": "0"}), CPU],
                                   disabled_optimizers=list(disabled))
    cuda = sess._providers[0]
    graph = sess._core.plan.graph
    with cuda.run_context():
        plan = Plan(graph, sess._providers, input_devices=["cuda"] * len(graph.inputs),
                    output_devices=["cuda"] * len(graph.outputs))
        dev = [cupy.asarray(feeds[v.name]) for v in graph.inputs]

    def run():
        with cuda.run_context():
            return plan.run(dev)
    return run, sess


def kernels_per_run(fn, runs: int = 3) -> float | None:
    """Kernel launches per call of fn() that CUPTI records (torch.profiler), or None."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(runs):
                fn()
            torch.cuda.synchronize()
        n = sum(1 for e in prof.events() if e.device_type.name == "CUDA" and "memcpy" not in e.name.lower()
                and "memset" not in e.name.lower())
        return n / runs
    except Exception as e:  # noqa: BLE001 - counting is a bonus
        print(f"  (kernel count unavailable: {type(e).__name__}: {e})", file=sys.stderr)
        return None


def timed(run, stream, runs, warmup):
    from bench_gpu import time_with_events
    return time_with_events(run, stream, runs, warmup)


def bias_gelu_model(rows: int, dtype) -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    nodes = [helper.make_node("Add", ["x", "bias"], ["a"]), helper.make_node("Div", ["a", "sqrt2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["f"]),
             helper.make_node("Mul", ["a", "f"], ["g"]), helper.make_node("Mul", ["g", "half"], ["y"])]
    inits = [numpy_helper.from_array(np.linspace(-1, 1, 3072).astype(dtype), "bias"),
             numpy_helper.from_array(np.asarray(1.4142135, dtype), "sqrt2"),
             numpy_helper.from_array(np.asarray(1.0, dtype), "one"),
             numpy_helper.from_array(np.asarray(0.5, dtype), "half")]
    g = helper.make_graph(nodes, "bias_gelu", [helper.make_tensor_value_info("x", elem, [rows, 3072])],
                          [helper.make_tensor_value_info("y", elem, [rows, 3072])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def bench_bias_gelu(rows: int, dtype, args) -> dict:
    import torch
    from bench_gpu import _session_stream, time_torch
    x = np.random.default_rng(0).standard_normal((rows, 3072)).astype(dtype)
    model = bias_gelu_model(rows, dtype)
    fused, sess = device_runner(model, {"x": x}, 99)
    plain, _ = device_runner(model, {"x": x}, 99, disabled=["ElementwiseChainFusion"])
    stream = _session_stream(sess)
    f_ms = timed(fused, stream, args.runs, args.warmup)[1]
    p_ms = timed(plain, stream, args.runs, args.warmup)[1]
    tx = torch.from_numpy(x).cuda()
    tb = torch.linspace(-1, 1, 3072, dtype=tx.dtype, device="cuda")

    def torch_run():
        a = tx + tb
        return a * (torch.erf(a / 1.4142135) + 1.0) * 0.5
    t_ms = time_torch(torch_run, args.runs, args.warmup)[1]
    diff = float(np.max(np.abs(fused()[0].get().astype(np.float64) - plain()[0].get().astype(np.float64))))
    return {"case": f"bias_gelu[{rows}x3072,{np.dtype(dtype).name}]", "fused_ms": f_ms, "unfused_ms": p_ms,
            "torch_ms": t_ms, "fused_kernels": kernels_per_run(fused), "unfused_kernels": kernels_per_run(plain),
            "speedup_vs_unfused": p_ms / f_ms, "ratio_vs_torch": f_ms / t_ms, "max_abs_diff": diff}


def bench_model_gpu(name: str, args) -> list[dict]:
    from bench_gpu import _session_stream
    path = model_path(name)
    with open(path, "rb") as f:
        data = f.read()
    feeds = model_inputs(name)
    rows = []
    configs = [(lv, LEVELS[lv], ()) for lv in LEVELS] + [("all_without_fusion", 99, ("ElementwiseChainFusion",))]
    ref = None
    for label, level, disabled in configs:
        run, sess = device_runner(data, feeds, level, disabled)
        out = run()[0].get()
        ref = out if ref is None else ref
        ms = timed(run, _session_stream(sess), args.runs, args.warmup)[1]
        rows.append({"model": name, "config": label, "steps": len(sess._core.plan.steps), "event_ms": ms,
                     "kernels": kernels_per_run(run, 2),
                     "max_abs_diff_vs_disable_all": float(np.max(np.abs(out.astype(np.float64) - ref)))})
        print(f"| {name} | {label} | {rows[-1]['steps']} | {ms:.3f} | {rows[-1]['kernels']} | "
              f"{rows[-1]['max_abs_diff_vs_disable_all']:.2e} |", flush=True)
    return rows


def _environment() -> dict:
    import datetime
    import platform

    import onnx
    commit = os.environ.get("ORTGPU_COMMIT")
    if not commit:
        try:
            commit = git_commit()
        except OSError:
            commit = "?"
    return {"date": datetime.date.today().isoformat(), "commit": commit, "python": platform.python_version(),
            "onnx": onnx.__version__, "machine": platform.machine(), "cpus": os.cpu_count()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bert_base,gpt2_decode,resnet50,ppocrv4_det")
    ap.add_argument("--gpu", action="store_true", help="also time on the GPU")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    result = {"environment": _environment(), "counts": [], "gpu_models": [], "gpu_micro": []}
    print("| model | level | nodes | CUDA steps | CPU steps | FusedElementwise | optimize s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        path = model_path(name)
        base = None
        for label, level in LEVELS.items():
            c = counts(path, level)
            base = base or c
            result["counts"].append({"model": name, "level": label, **c})
            print(f"| {name} | {label} | {c['nodes']} | {c['cuda_steps']} | {c['cpu_steps']} | {c['fused']} | "
                  f"{c['optimize_s']} |", flush=True)
        print(f"  {name}: CUDA steps {base['cuda_steps']} -> {c['cuda_steps']} "
              f"({base['cuda_steps'] / max(c['cuda_steps'], 1):.2f}x fewer)")
    if args.gpu:
        from bench_gpu import gpu_problem
        problem = gpu_problem()
        if problem:
            print(f"bench_elementwise_fusion: no GPU part: {problem}", file=sys.stderr)
            return 2
        print("| case | fused ms | unfused ms | torch ms | kernels fused/unfused | speedup | ratio vs torch |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for rows, dtype in ((128, np.float32), (4096, np.float32), (128, np.float16), (4096, np.float16)):
            r = bench_bias_gelu(rows, dtype, args)
            result["gpu_micro"].append(r)
            print(f"| {r['case']} | {r['fused_ms']:.4f} | {r['unfused_ms']:.4f} | {r['torch_ms']:.4f} | "
                  f"{r['fused_kernels']}/{r['unfused_kernels']} | {r['speedup_vs_unfused']:.2f} | "
                  f"{r['ratio_vs_torch']:.2f} |", flush=True)
        print("| model | config | steps | event ms | kernels/run | max diff |")
        print("|---|---|---:|---:|---:|---:|")
        for name in args.models.split(","):
            try:
                result["gpu_models"] += bench_model_gpu(name, args)
            except Exception as e:  # noqa: BLE001 - one model failing must not hide the others
                import traceback
                traceback.print_exc()
                result["gpu_models"].append({"model": name, "error": f"{type(e).__name__}: {e}"})
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
