"""Command line: ``ortgpu demo``, ``ortgpu run MODEL``, ``ortgpu profile MODEL`` and
``ortgpu convert --fp16 IN OUT``."""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

import numpy as np


def demo_model_path() -> str:
    """The light ResNet-50 that ships inside the onnx package (real architecture, synthetic weights)."""
    import onnx.backend.test as suite
    return os.path.join(os.path.dirname(suite.__file__), "data", "light", "light_resnet50.onnx")


def _time_runs(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _summarize(name, value) -> str:
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub" and value.size:
        v = value.astype(np.float64)
        return (f"  {name}: shape={list(value.shape)} dtype={value.dtype} "
                f"min={v.min():.6g} max={v.max():.6g} mean={v.mean():.6g}")
    if isinstance(value, np.ndarray):
        return f"  {name}: shape={list(value.shape)} dtype={value.dtype}"
    if isinstance(value, list):
        return f"  {name}: sequence of {len(value)}"
    return f"  {name}: {type(value).__name__}"


def _providers_arg(text: str | None):
    if not text:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def run_model(path: str, inputs_path: str | None, providers, runs: int, compare: bool) -> int:
    import ortgpu
    sess = ortgpu.InferenceSession(path, providers=providers)
    if inputs_path:
        with np.load(inputs_path, allow_pickle=False) as data:
            feed = {k: data[k] for k in data.files}
    else:
        from ortgpu.sample_inputs import make_inputs
        feed = make_inputs(sess)
    print(f"model: {path}")
    print(f"providers: {', '.join(sess.get_providers())}")
    placement = collections.Counter(p for _, _, p in sess.get_provider_assignment())
    print("placement: " + ", ".join(f"{n} nodes on {p}" for p, n in placement.items()))
    for arg in sess.get_inputs():
        print(f"  input {arg.name}: {arg.type} {list(feed[arg.name].shape)}")
    outputs = sess.run(None, feed)  # warm-up
    times = _time_runs(lambda: sess.run(None, feed), runs)
    print("outputs:")
    for arg, value in zip(sess.get_outputs(), outputs):
        print(_summarize(arg.name, value))
    print(f"latency: median {statistics.median(times) * 1e3:.2f} ms, min {min(times) * 1e3:.2f} ms "
          f"over {runs} runs")
    if compare:
        _compare_with_onnxruntime(path, feed, outputs)
    return 0


def _compare_with_onnxruntime(path, feed, outputs) -> None:
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime: not installed, no comparison")
        return
    try:
        quiet = onnxruntime.SessionOptions()
        quiet.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
        ref = onnxruntime.InferenceSession(path, quiet, providers=["CPUExecutionProvider"]).run(None, feed)
    except Exception as e:  # onnxruntime refuses some models that ortgpu runs
        print(f"onnxruntime {onnxruntime.__version__}: could not run the model ({type(e).__name__})")
        return
    for i, (a, b) in enumerate(zip(outputs, ref)):
        if isinstance(a, np.ndarray) and a.dtype.kind in "fc":
            diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
            print(f"onnxruntime {onnxruntime.__version__} CPU: output {i} max abs difference {diff:.3g}")
        else:
            same = np.array_equal(a, b)
            print(f"onnxruntime {onnxruntime.__version__} CPU: output {i} {'identical' if same else 'DIFFERENT'}")


def profile_model(path: str, inputs_path: str | None, providers, runs: int, warmup: int, out_dir: str,
                  top: int) -> int:
    """Run `path` with profiling on: write the onnxruntime-format trace and an HTML report to
    `out_dir`, print the summary tables.  The first `warmup` runs are in the trace but not in
    the summary."""
    import ortgpu
    from ortgpu.profiling import format_table, summarize
    from ortgpu.profiling.html import write_html
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(out_dir, f"{stem}_profile")
    sess = ortgpu.InferenceSession(path, so, providers=providers)
    feed = _load_feed(inputs_path, sess)
    for _ in range(warmup + runs):
        sess.run(None, feed)
    trace = sess.end_profiling()
    summary = summarize(trace, skip_runs=warmup, peaks=_peaks(sess.get_providers()))
    print(f"model: {path}")
    print(f"providers: {', '.join(sess.get_providers())}")
    print(format_table(summary, top=top))
    report = write_html(summary, trace, os.path.splitext(trace)[0] + ".html", title=f"ortgpu profile: {stem}")
    print(f"trace: {trace}")
    print(f"report: {report}")
    return 0


def _load_feed(inputs_path, sess) -> dict:
    if inputs_path:
        with np.load(inputs_path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    from ortgpu.sample_inputs import make_inputs
    return make_inputs(sess)


def _peaks(provider_names) -> dict:
    """Peak rates for the share-of-peak columns: the CPU measured now, a GPU from its datasheet."""
    from ortgpu.profiling.cost import gpu_peak, measure_cpu_peak
    peaks = {"cpu": measure_cpu_peak()}
    if "CUDAExecutionProvider" in provider_names:
        try:
            import cupy
            name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
            peak = gpu_peak(name.decode() if isinstance(name, bytes) else name)
            if peak is not None:
                peaks["gpu"] = peak
        except Exception:  # noqa: BLE001 - no share-of-peak column for an unknown GPU
            pass
    return peaks


def convert_model_file(src: str, dst: str, bf16: bool, keep_io_types: bool, op_block_list: str | None,
                       node_block_list: str | None) -> int:
    """Write a float16 (or bfloat16) copy of the model at `src` to `dst` and say what stayed float32."""
    import onnx
    from ortgpu.precision import DEFAULT_OP_BLOCK_LIST, convert_model
    from ortgpu.precision.tensors import TARGET_DTYPES
    target = list(TARGET_DTYPES)[1 if bf16 else 0]
    model = onnx.load(src)
    extra = tuple(op.strip() for op in (op_block_list or "").split(",") if op.strip())
    nodes = [n.strip() for n in (node_block_list or "").split(",") if n.strip()]
    converted, report = convert_model(model, target, keep_io_types=keep_io_types,
                                      op_block_list=DEFAULT_OP_BLOCK_LIST + extra, node_block_list=nodes,
                                      copy_model=False)
    onnx.checker.check_model(converted)
    onnx.save(converted, dst, save_as_external_data=converted.ByteSize() > 2_000_000_000)
    print(f"{src} -> {dst}: {report.narrow_nodes} nodes in {'bfloat16' if bf16 else 'float16'}, "
          f"{len(report.kept_float32)} kept in float32, {report.casts} Casts, "
          f"{report.converted_initializers} initializers converted")
    for name, op, why in report.kept_float32:
        print(f"  float32: {op} {name!r}: {why}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ortgpu", description="ortgpu: an ONNX runtime with onnxruntime's API")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the embedded ResNet-50 on the best available provider")
    d.add_argument("--runs", type=int, default=5)
    d.add_argument("--providers", help="comma-separated provider names (default: all available)")
    r = sub.add_parser("run", help="run any model on given or generated inputs")
    r.add_argument("model")
    r.add_argument("--inputs", help=".npz file with one array per input name")
    r.add_argument("--providers", help="comma-separated provider names (default: all available)")
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--compare", action="store_true", help="compare with onnxruntime when installed")
    pr = sub.add_parser("profile", help="profile a model: onnxruntime-format trace, summary, HTML report")
    pr.add_argument("model")
    pr.add_argument("--inputs", help=".npz file with one array per input name")
    pr.add_argument("--providers", help="comma-separated provider names (default: all available)")
    pr.add_argument("--runs", type=int, default=10, help="profiled runs in the summary")
    pr.add_argument("--warmup", type=int, default=1, help="runs before them (in the trace, not the summary)")
    pr.add_argument("--out", default=".", help="folder for the trace and the report")
    pr.add_argument("--top", type=int, default=15, help="nodes in the top-nodes table")
    cv = sub.add_parser("convert", help="convert a float32 model to float16 (or bfloat16)")
    kind = cv.add_mutually_exclusive_group(required=True)
    kind.add_argument("--fp16", action="store_true", help="float16 (onnxconverter-common's meaning)")
    kind.add_argument("--bf16", action="store_true", help="bfloat16")
    cv.add_argument("input")
    cv.add_argument("output")
    cv.add_argument("--keep-io-types", action="store_true", help="keep float32 graph inputs and outputs")
    cv.add_argument("--op-block-list", help="comma-separated op types kept in float32, besides the defaults")
    cv.add_argument("--node-block-list", help="comma-separated node names kept in float32")
    from ortgpu.quantization import cli as quantize_cli
    quantize_cli.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "quantize":
            return quantize_cli.run(args)
        if args.command == "demo":
            import ortgpu
            print(f"ortgpu {ortgpu.__version__}; available providers: {', '.join(ortgpu.get_available_providers())}")
            return run_model(demo_model_path(), None, _providers_arg(args.providers), args.runs, True)
        if args.command == "convert":
            return convert_model_file(args.input, args.output, args.bf16, args.keep_io_types,
                                      args.op_block_list, args.node_block_list)
        if args.command == "profile":
            return profile_model(args.model, args.inputs, _providers_arg(args.providers), args.runs,
                                 args.warmup, args.out, args.top)
        return run_model(args.model, args.inputs, _providers_arg(args.providers), args.runs, args.compare)
    except Exception as e:
        print(f"ortgpu: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
