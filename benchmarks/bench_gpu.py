"""ortgpu's CUDA provider against PyTorch eager on the same GPU, in the same run, float32.

    python benchmarks/bench_gpu.py [--runs N] [--warmup N] [--batches 1,32]
                                   [--models resnet50,bert_base,gpt2_decode] [--tf32] [--json OUT]

Models (tests/transformer_models.py, random weights, exported with torch): ResNet-50 (224x224),
BERT-base (sequence 128), GPT-2 decode step (one new token, KV cache of 128 tokens), each at batch 1
and 32. Per model and batch it prints the median over ``--runs`` (after ``--warmup``) of:

- ``ortgpu_ms``: wall time of ``session.run()`` with NumPy feeds (host-to-device copies of the
  inputs and device-to-host copies of the outputs included, as run() returns NumPy);
- ``event_ms``: the same runs timed by CUDA events (``cupy.cuda.Event``) recorded on the session's
  stream before and after run(). Events bracket the whole run, so when the host is the bottleneck
  they read about the wall time: they show GPU time only where the GPU is the bottleneck;
- ``busy_ms``: the time the GPU was actually busy per run (union of the kernel, copy and memset
  intervals that CUPTI records through torch.profiler; CuPy's kernels are recorded as well);
  ``wall - busy`` is the host overhead, and at batch 1 it is divided by the number of steps into
  ``host_us_per_node``;
- ``transfer_ms``: copying the feeds to the device and the outputs back with CuPy alone (the part
  of ortgpu_ms that IO binding removes); ``iobinding_ms`` when the session has onnxruntime's
  ``io_binding()``/``run_with_iobinding()`` (inputs and outputs left on the device);
- ``torch_ms`` / ``torch_event_ms``: PyTorch eager (``torch.inference_mode``, inputs already on
  the device) on the same module, wall and CUDA events; ``ratio = ortgpu_ms / torch_ms`` and
  ``ratio_without_transfer = (ortgpu_ms - transfer_ms) / torch_ms``;
- with CUDA graphs (batches in ``--graph-batches``, default 1): a second session with
  ``enable_cuda_graph`` runs through IO binding (CUDA OrtValue inputs, preallocated CUDA
  outputs; warm-ups and the capture happen before timing): ``graph_ms`` (wall per replayed
  run), ``graph_event_ms`` (CUDA events around it), ``graph_busy_ms`` (CUPTI busy time, the
  GPU time) and ``graph_wall_over_gpu = graph_ms / graph_busy_ms`` (target: within 1.1 at
  batch 1; events stand in for busy time when CUPTI is unavailable); ``graph_error`` says why a
  model could not be captured.

Float32 is strict by default: ortgpu gets ``use_tf32=0`` and torch has TF32 off for matmul and
cuDNN; ``--tf32`` allows it on both. torch runs with ``cudnn.benchmark`` on, as ortgpu's default
``cudnn_conv_algo_search`` (EXHAUSTIVE) searches too.

With no GPU (no CuPy, no device, or no CUDAExecutionProvider) it prints why and exits with 2.
``--json OUT`` writes the results with the device name, driver, versions, date and commit
(``$ORTGPU_COMMIT`` if set, else ``git rev-parse``), to be committed as
``benchmarks/results/<date>-<device>.json``.

NOT YET RUN ON A GPU: written without a device; expect to adjust it on the first GPU run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from common import cuda_problem, device_name, git_commit, write_json  # noqa: E402

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
TORCH_DEVICE = "cuda"


def gpu_problem() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    problem = cuda_problem("; install ortgpu[cuda13] or ortgpu[cuda12]")
    if problem:
        return problem
    import ortgpu  # noqa: PLC0415
    if CUDA not in ortgpu.get_available_providers():
        return f"ortgpu does not list {CUDA} (available: {ortgpu.get_available_providers()})"
    try:
        import torch  # noqa: PLC0415
        import transformers  # noqa: F401, PLC0415
    except ImportError as e:
        return f"torch and transformers are needed for the models and the PyTorch side ({e})"
    if not torch.cuda.is_available():
        return "torch does not see the GPU (a CPU-only torch?)"
    return None


# --- timing -----------------------------------------------------------------------------------
def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _session_stream(sess):
    """The CUDA provider's stream if it exposes one (a cupy Stream), else CuPy's current stream."""
    import cupy  # noqa: PLC0415
    for p in getattr(sess, "_providers", ()):
        if getattr(p, "name", "") == CUDA:
            s = getattr(p, "stream", None)  # a cupy Stream or ExternalStream
            if s is not None and hasattr(s, "ptr") and hasattr(s, "synchronize"):
                return s
    return cupy.cuda.get_current_stream()


def time_with_events(fn, stream, runs, warmup):
    """Median wall ms and median CUDA-event ms of fn(), events recorded on `stream`."""
    import cupy  # noqa: PLC0415
    for _ in range(warmup):
        fn()
    stream.synchronize()
    walls, events = [], []
    for _ in range(runs):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        t0 = time.perf_counter()
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        walls.append((time.perf_counter() - t0) * 1e3)
        events.append(cupy.cuda.get_elapsed_time(start, end))
    return _median(walls), _median(events)


def time_torch(fn, runs, warmup):
    import torch  # noqa: PLC0415
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    walls, events = [], []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        end.synchronize()
        walls.append((time.perf_counter() - t0) * 1e3)
        events.append(start.elapsed_time(end))
    return _median(walls), _median(events)


def gpu_busy_ms(fn, runs: int = 5):
    """Per-run GPU busy time: the union of the device intervals CUPTI recorded over `runs` calls
    (read from torch.profiler's Chrome trace), divided by `runs`. None if the profiler fails."""
    try:
        import torch  # noqa: PLC0415
        from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(runs):
                fn()
            torch.cuda.synchronize()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as f:
                trace = json.load(f)
    except Exception as e:  # noqa: BLE001 - the profiler is a bonus, never a failure
        print(f"  (CUPTI busy time unavailable: {type(e).__name__}: {e})", file=sys.stderr)
        return None
    spans = sorted((ev["ts"], ev["ts"] + ev.get("dur", 0)) for ev in trace.get("traceEvents", [])
                   if ev.get("ph") == "X" and ev.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"))
    if not spans:
        return None
    busy, cur_s, cur_e = 0.0, *spans[0]
    for s, e in spans[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    return busy / 1e3 / runs  # trace times are microseconds


# --- one model at one batch -------------------------------------------------------------------
def _iobinding_runner(sess, feed, out_names):
    """A callable that runs with inputs and outputs on the device through onnxruntime's IO-binding
    API, or None where the session has none yet."""
    import ortgpu  # noqa: PLC0415
    if not (hasattr(sess, "io_binding") and hasattr(sess, "run_with_iobinding")):
        return None
    try:
        binding = sess.io_binding()
        for name, x in feed.items():
            binding.bind_ortvalue_input(name, ortgpu.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        for name in out_names:
            binding.bind_output(name, "cuda")
        sess.run_with_iobinding(binding)
        return lambda: sess.run_with_iobinding(binding)
    except Exception as e:  # noqa: BLE001
        print(f"  (IO binding unavailable: {type(e).__name__}: {e})", file=sys.stderr)
        return None


def _graph_runner(path, feed, outputs, out_names, tf32: bool):
    """(run, session stream) replaying a CUDA graph through IO binding: inputs are CUDA OrtValues,
    outputs preallocated CUDA OrtValues shaped like `outputs`; the warm-up runs and the capture
    happen here."""
    import ortgpu  # noqa: PLC0415
    options = {"use_tf32": "1" if tf32 else "0", "enable_cuda_graph": "1"}
    sess = ortgpu.InferenceSession(path, providers=[(CUDA, options), CPU])
    binding = sess.io_binding()
    for name, x in feed.items():
        binding.bind_ortvalue_input(name, ortgpu.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    for name, ref in zip(out_names, outputs):
        binding.bind_ortvalue_output(name, ortgpu.OrtValue.ortvalue_from_shape_and_type(
            list(ref.shape), ref.dtype, "cuda", 0))
    for _ in range(4):  # two warm-ups, the capture, one replay
        sess.run_with_iobinding(binding)
    captured = getattr(getattr(sess, "_graphs", None), "captured", {})
    if 0 not in captured:
        raise RuntimeError("no CUDA graph was captured after 4 runs")
    return (lambda: sess.run_with_iobinding(binding)), _session_stream(sess)


def bench_graph(path, feed, outputs, out_names, args) -> dict:
    """The CUDA-graph columns of one model and batch (see the module docstring)."""
    try:
        run, stream = _graph_runner(path, feed, outputs, out_names, args.tf32)
    except Exception as e:  # noqa: BLE001 - a model that cannot be captured is a result, not a crash
        return {"graph_error": f"{type(e).__name__}: {e}"[:300]}
    wall, event = time_with_events(run, stream, args.runs, args.warmup)
    busy = gpu_busy_ms(run) if args.profile else None
    gpu = busy if busy is not None else event
    return {"graph_ms": wall, "graph_event_ms": event, "graph_busy_ms": busy,
            "graph_wall_over_gpu": wall / gpu if gpu else None}


def transfer_ms(feed, outputs, runs):
    """Median ms to copy the feeds to the device and the outputs back, with CuPy alone."""
    import cupy  # noqa: PLC0415
    stream = cupy.cuda.get_current_stream()
    on_device = [cupy.asarray(o) for o in outputs]  # what run() would download
    stream.synchronize()
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        uploaded = [cupy.asarray(x) for x in feed.values()]
        stream.synchronize()
        for o in on_device:
            o.get()
        times.append((time.perf_counter() - t0) * 1e3)
        del uploaded
    return _median(times[1:])


def bench_one(tm, name, batch, args) -> dict:
    import torch  # noqa: PLC0415

    import ortgpu  # noqa: PLC0415
    path = tm.export(name)
    feed = tm.make_inputs(name, batch=batch)
    sess = ortgpu.InferenceSession(path, providers=[(CUDA, {"use_tf32": "1" if args.tf32 else "0"}), CPU])
    placement = sess.get_provider_assignment()
    steps = len(placement)
    on_gpu = sum(1 for _, _, p in placement if p == CUDA)
    stream = _session_stream(sess)
    run = lambda: sess.run(None, feed)  # noqa: E731
    outs = run()
    wall, event = time_with_events(run, stream, args.runs, args.warmup)
    busy = gpu_busy_ms(run) if args.profile else None
    xfer = transfer_ms(feed, outs, min(args.runs, 10))
    out_names = [o.name for o in sess.get_outputs()]
    io_run = _iobinding_runner(sess, feed, out_names)
    io_ms = time_with_events(io_run, stream, args.runs, args.warmup)[0] if io_run else None
    graph = bench_graph(path, feed, outs, out_names, args) if batch in args.graph_batches else {}

    model = tm.torch_model(name).to(TORCH_DEVICE)
    targs = [torch.from_numpy(feed[n]).to(TORCH_DEVICE) for n in tm.input_names(name)]

    def torch_run():
        with torch.inference_mode():
            return model(*targs)

    with torch.inference_mode():
        ref = model(*targs)
    ref0 = (ref if isinstance(ref, torch.Tensor) else ref[0]).float().cpu().numpy()
    t_wall, t_event = time_torch(torch_run, args.runs, args.warmup)
    del model, targs, ref
    torch.cuda.empty_cache()

    row = {
        "model": name, "batch": batch, "steps": steps, "steps_on_gpu": on_gpu,
        "ortgpu_ms": wall, "event_ms": event, "busy_ms": busy, "transfer_ms": xfer, "iobinding_ms": io_ms,
        "torch_ms": t_wall, "torch_event_ms": t_event,
        "ratio": wall / t_wall,
        "ratio_without_transfer": (wall - xfer) / t_wall if xfer is not None else None,
        "ratio_iobinding": io_ms / t_wall if io_ms is not None else None,
        "max_abs_diff_vs_torch": float(np.max(np.abs(outs[0].astype(np.float64) - ref0))),
        **graph,
    }
    if graph.get("graph_ms") is not None:
        row["graph_ratio_vs_torch"] = graph["graph_ms"] / t_wall
    if busy is not None:
        row["host_overhead_ms"] = wall - busy
        if batch == 1:
            row["host_us_per_node"] = (wall - busy) / steps * 1e3
    return row


# --- report -----------------------------------------------------------------------------------
def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def _environment() -> dict:
    import cupy  # noqa: PLC0415
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    import ortgpu  # noqa: PLC0415
    props = cupy.cuda.runtime.getDeviceProperties(0)
    commit = os.environ.get("ORTGPU_COMMIT") or git_commit(short=False) or "unknown"
    return {
        "date": datetime.date.today().isoformat(), "commit": commit, "device": device_name(cupy),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "driver": cupy.cuda.runtime.driverGetVersion(), "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cupy": cupy.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "ortgpu": getattr(ortgpu, "__ortgpu_version__", "?"), "numpy": np.__version__,
        "python": platform.python_version(), "host": f"{platform.machine()} {os.cpu_count()} cores",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--models", default="resnet50,bert_base,gpt2_decode")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in ortgpu and torch")
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the CUPTI busy-time measurement (torch.profiler)")
    ap.add_argument("--graph-batches", default="1",
                    help="batches also timed with CUDA graphs (comma-separated; empty for none)")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    args.graph_batches = {int(b) for b in args.graph_batches.split(",") if b.strip()}

    problem = gpu_problem()
    if problem:
        print(f"bench_gpu: cannot run here: {problem}.", file=sys.stderr)
        return 2
    import torch  # noqa: PLC0415

    from support import transformer_models as tm  # noqa: PLC0415
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True

    env = _environment()
    print(f"{env['device']} (sm {env['compute_capability']}), driver {env['driver']}, CuPy {env['cupy']}, "
          f"torch {env['torch']}, commit {env['commit']}, TF32 {'on' if args.tf32 else 'off'}")
    header = ("| model | batch | steps (GPU) | ortgpu ms | events ms | busy ms | transfer ms | torch ms | "
              "ratio | ratio w/o transfer | host us/node |")
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows, failures = [], []
    cases = [(name, int(b)) for name in args.models.split(",") for b in args.batches.split(",")]
    for name, batch in cases:
        try:
            r = bench_one(tm, name, batch, args)
        except KeyboardInterrupt:  # stopped by a time limit: keep what was measured
            failures.append({"model": name, "batch": batch, "error": "interrupted"})
            print(f"| {name} | {batch} | interrupted |", flush=True)
            break
        except Exception as e:  # noqa: BLE001 - one model failing must not hide the others
            traceback.print_exc()
            failures.append({"model": name, "batch": batch, "error": f"{type(e).__name__}: {e}"})
            print(f"| {name} | {batch} | failed: {type(e).__name__} |", flush=True)
            continue
        rows.append(r)
        print(f"| {name} | {batch} | {r['steps']} ({r['steps_on_gpu']}) | {_fmt(r['ortgpu_ms'])} | "
              f"{_fmt(r['event_ms'])} | {_fmt(r['busy_ms'])} | {_fmt(r['transfer_ms'])} | "
              f"{_fmt(r['torch_ms'])} | {_fmt(r['ratio'])}x | {_fmt(r['ratio_without_transfer'])}x | "
              f"{_fmt(r.get('host_us_per_node'), '.1f')} |", flush=True)
    graphs = [r for r in rows if "graph_ms" in r or "graph_error" in r]
    if graphs:
        print("\nCUDA graphs (IO binding, preallocated outputs; target: wall within 1.1x of GPU time at batch 1)")
        print("| model | batch | graph ms | events ms | busy ms | wall / GPU | eager torch ms | graph vs torch |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in graphs:
            if "graph_error" in r:
                print(f"| {r['model']} | {r['batch']} | not captured: {r['graph_error']} |")
                continue
            print(f"| {r['model']} | {r['batch']} | {_fmt(r['graph_ms'], '.3f')} | {_fmt(r['graph_event_ms'], '.3f')} | "
                  f"{_fmt(r['graph_busy_ms'], '.3f')} | {_fmt(r['graph_wall_over_gpu'])}x | {_fmt(r['torch_ms'], '.3f')} | "
                  f"{_fmt(r.get('graph_ratio_vs_torch'))}x |", flush=True)
    big = [r for r in rows if r["batch"] >= 32]
    if big:
        print("\nbatch 32 target (within 1.2x of PyTorch eager): " + ", ".join(
            f"{r['model']} {_fmt(r['ratio'])}x ({_fmt(r['ratio_without_transfer'])}x without transfers)"
            for r in big))
    if args.json:
        write_json(args.json, {**env, "tf32": args.tf32, "runs": args.runs, "warmup": args.warmup,
                               "results": rows, "failures": failures}, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
