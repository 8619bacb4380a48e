"""Static memory planning, measured: how close the planner comes to the lower bound on real models,
whether a plan would speed up the CPU provider, and (on a GPU) peak memory and latency of the CUDA
provider with and without memory patterns.

    python benchmarks/bench_memory.py [plan] [cpu] [gpu] [--runs N] [--no-zoo] [--json OUT]

plan  For the light models shipped in onnx and the models tier (tests/support/model_zoo.py, if cached or
      fetchable): tensor lifetimes recorded from one CPU run (ortgpu.memory.lifetimes), planned by
      ortgpu.memory.planner: naive sum (no reuse), lower bound (most bytes alive at one step),
      planned peak, peak / lower bound, planning time.
cpu   Could the plan speed up NumPy?  NumPy kernels allocate their outputs; a plan could only help
      through preallocated outputs.  Per model, the recorded allocation sequence is replayed twice
      with the same writes: 'fresh' allocates each tensor (np.empty) and drops it after its last
      use, 'planned' writes into views of one preallocated block at the planned offsets.  The
      difference is what allocation costs NumPy in that run at most; 'gain' sets it against the
      model's measured run time (median of --runs, same process).
gpu   CUDAExecutionProvider, enable_mem_pattern on vs off: median run time, the arena's peak bytes
      in use and reserved, and the pattern's planned peak against its lower bound.  Needs CuPy and a
      device (scripts/gpu-check.sh runs it); NOT YET RUN ON A GPU.

Default: plan and cpu.  No assertions: numbers to read (docs/design.md quotes them).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import ortgpu  # noqa: E402
from ortgpu.memory.lifetimes import run_lifetimes  # noqa: E402
from ortgpu.memory.planner import plan_offsets  # noqa: E402
from ortgpu.sample_inputs import make_inputs  # noqa: E402
from common import median_time, write_json  # noqa: E402

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
MB = 1e6


def light_models() -> dict:
    import onnx.backend.test as suite
    d = os.path.join(os.path.dirname(suite.__file__), "data", "light")
    return {f[len("light_"):-len(".onnx")]: (os.path.join(d, f), None)
            for f in sorted(os.listdir(d)) if f.startswith("light_") and f.endswith(".onnx")}


def zoo_models() -> dict:
    try:
        from support.model_zoo import image_input, model_path  # noqa: PLC0415
        out = {
            "ppocrv4_det 1x3x480x640": (model_path("ppocrv4_det"), {"x": image_input((1, 3, 480, 640))}),
            "ppocrv4_rec 1x3x48x320": (model_path("ppocrv4_rec"), {"x": image_input((1, 3, 48, 320))}),
            "ppocr_cls 6x3x48x192": (model_path("ppocr_cls"), {"x": image_input((6, 3, 48, 192))}),
        }
    except Exception as e:  # noqa: BLE001 - no network and no cache: the light models still run
        print(f"models tier unavailable ({type(e).__name__}: {e})")
        return {}
    return out


def cpu_session(path):
    return ortgpu.InferenceSession(path, providers=[CPU])


def recorded_plan(path, feed):
    s = cpu_session(path)
    feed = feed if feed is not None else make_inputs(s)
    intervals = run_lifetimes(s._core.plan, s._bind_inputs(feed))
    t0 = time.perf_counter()
    plan = plan_offsets(intervals)
    return s, feed, intervals, plan, time.perf_counter() - t0


def bench_plan(models) -> list[dict]:
    rows = []
    print("\n## Planned peak against the bounds (lifetimes from one CPU run)\n")
    print("| model | tensors | naive sum MB | lower bound MB | planned peak MB | peak / lower bound | plan ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (path, feed) in models.items():
        _, _, intervals, plan, secs = recorded_plan(path, feed)
        row = {"model": name, "tensors": len(intervals), "naive_sum": plan.naive_sum,
               "lower_bound": plan.lower_bound, "peak": plan.peak,
               "peak_over_lower_bound": round(plan.peak_over_lower_bound, 4), "plan_ms": round(secs * 1e3, 1)}
        rows.append(row)
        print(f"| {name} | {len(intervals)} | {plan.naive_sum / MB:.1f} | {plan.lower_bound / MB:.2f} | "
              f"{plan.peak / MB:.2f} | {plan.peak_over_lower_bound:.3f} | {secs * 1e3:.1f} |")
    return rows


def replay_fresh(events, sizes):
    """Allocate each tensor with np.empty at its first step, write it, drop it after its last."""
    live = {}
    for step_births, step_deaths in events:
        for t in step_births:
            buf = np.empty(sizes[t], dtype=np.uint8)
            buf.fill(1)
            live[t] = buf
        for t in step_deaths:
            del live[t]


def replay_planned(events, views):
    """The same writes into views of one block at the planned offsets."""
    for step_births, _ in events:
        for t in step_births:
            views[t].fill(1)


def allocation_events(intervals):
    """Per step: (tensors born, tensors whose last step it is)."""
    steps = max(iv.last for iv in intervals) + 1
    births = [[] for _ in range(steps)]
    deaths = [[] for _ in range(steps)]
    for t, iv in enumerate(intervals):
        births[iv.first].append(t)
        deaths[iv.last].append(t)
    return list(zip(births, deaths))


def bench_cpu(models, runs: int) -> list[dict]:
    rows = []
    print("\n## Would a static plan speed up the CPU provider?\n")
    print("| model | run ms | allocation replay: fresh ms | planned ms | saved ms | gain (saved / run) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (path, feed) in models.items():
        s, feed, intervals, plan, _ = recorded_plan(path, feed)
        if not intervals:
            continue
        run_s = median_time(lambda: s.run(None, feed), runs, warmup=1)
        events = allocation_events(intervals)
        sizes = [iv.size for iv in intervals]
        block = np.empty(plan.peak, dtype=np.uint8)
        block.fill(0)   # touch it once: a kept block is resident
        views = [block[o:o + n] for o, n in zip(plan.offsets, sizes)]
        fresh = median_time(lambda: replay_fresh(events, sizes), max(runs, 5), warmup=1)
        planned = median_time(lambda: replay_planned(events, views), max(runs, 5), warmup=1)
        saved = fresh - planned
        rows.append({"model": name, "run_ms": round(run_s * 1e3, 2), "fresh_ms": round(fresh * 1e3, 2),
                     "planned_ms": round(planned * 1e3, 2), "gain": round(saved / run_s, 4)})
        print(f"| {name} | {run_s * 1e3:.1f} | {fresh * 1e3:.2f} | {planned * 1e3:.2f} | {saved * 1e3:.2f} | "
              f"{saved / run_s:+.1%} |")
    return rows


def bench_gpu(models, runs: int) -> list[dict] | None:
    """Never run on a GPU: written without a device."""
    if CUDA not in ortgpu.get_available_providers():
        print("\n(gpu: CUDAExecutionProvider is not available here)")
        return None
    rows = []
    print("\n## CUDA provider: memory patterns on and off\n")
    print("| model | pattern | run ms | peak in use MB | reserved MB | plan peak MB | plan lower bound MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, (path, feed) in models.items():
        for on in (False, True):
            so = ortgpu.SessionOptions()
            so.enable_mem_pattern = on
            try:
                s = ortgpu.InferenceSession(path, so, providers=[(CUDA, {"use_tf32": "0"}), CPU])
                f = feed if feed is not None else make_inputs(s)
                run_s = median_time(lambda: s.run(None, f), runs, warmup=3)
            except Exception as e:  # noqa: BLE001 - one model failing must not stop the table
                print(f"| {name} | {'on' if on else 'off'} | failed: {type(e).__name__}: {str(e)[:120]} |")
                continue
            st = s.get_memory_stats()[CUDA]
            last = st["mem_pattern"].get("last_plan", {})
            rows.append({"model": name, "pattern": on, "run_ms": round(run_s * 1e3, 3),
                         "max_bytes_in_use": st["max_bytes_in_use"], "max_bytes_reserved": st["max_bytes_reserved"],
                         "plan": last, "replays": st["mem_pattern"]["replays"],
                         "replay_misses": st["mem_pattern"]["replay_misses"]})
            print(f"| {name} | {'on' if on else 'off'} | {run_s * 1e3:.2f} | {st['max_bytes_in_use'] / MB:.1f} | "
                  f"{st['max_bytes_reserved'] / MB:.1f} | {last.get('peak', 0) / MB:.1f} | "
                  f"{last.get('lower_bound', 0) / MB:.1f} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="*", metavar="plan|cpu|gpu")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-zoo", action="store_true", help="only the light models shipped in onnx")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    parts = args.parts or ["plan", "cpu"]
    unknown = set(parts) - {"plan", "cpu", "gpu"}
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}: choose from plan, cpu, gpu")
    models = light_models()
    if not args.no_zoo:
        models.update(zoo_models())
    out = {"date": time.strftime("%Y-%m-%d"), "numpy": np.__version__}
    if "plan" in parts:
        out["plan"] = bench_plan(models)
    if "cpu" in parts:
        out["cpu"] = bench_cpu(models, args.runs)
    if "gpu" in parts:
        out["gpu"] = bench_gpu(models, args.runs)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
