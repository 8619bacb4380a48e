"""Command line: ``ortgpu demo``, ``ortgpu run MODEL``, ``ortgpu profile MODEL``,
``ortgpu convert --fp16 IN OUT`` and ``ortgpu --version`` (also ``python -m ortgpu``)."""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

import numpy as np


def demo_model_path() -> str:
    """The light ResNet-50 that ships inside the onnx package (real architecture, synthetic
    weights): the demo of old, kept for the tests that find onnx's light models beside it."""
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
    """The --providers list; an unknown name is an error here (a session would fall back to
    the CPU, as onnxruntime's does, and a typo on the command line should not run silently)."""
    if not text:
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    from ortgpu.providers_select import ALL_PROVIDERS  # noqa: PLC0415
    for name in names:
        if name not in ALL_PROVIDERS:
            raise ValueError(f"Unknown Provider Type: {name} (known: {', '.join(ALL_PROVIDERS)})")
    return names


def run_model(path: str, inputs_path: str | None, providers, runs: int, compare: bool,
              shapes: list[str] | None = None) -> int:
    import ortgpu
    sess = ortgpu.InferenceSession(path, providers=providers)
    feed = _load_feed(inputs_path, sess, shapes)
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
                  top: int, shapes: list[str] | None = None) -> int:
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
    feed = _load_feed(inputs_path, sess, shapes)
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


def compare_profiles(a_path: str, b_path: str, skip_runs: int = 0) -> int:
    """Print the per-op-type time of two traces and their deltas (B - A), warm-up runs left out."""
    from ortgpu.profiling.compare import compare_traces, format_compare
    a, b, rows = compare_traces(a_path, b_path, skip_runs)
    print(format_compare(a, b, rows, a_path, b_path))
    return 0


def _load_feed(inputs_path, sess, shapes=None) -> dict:
    """The feed of `ortgpu run`/`profile`: the .npz arrays (names checked against the model's
    inputs), and generated values (shapes from --shape) for the inputs it does not give."""
    from ortgpu.sample_inputs import make_inputs, parse_shapes
    wanted = parse_shapes(shapes or [], sess)
    given = {}
    if inputs_path:
        with np.load(inputs_path, allow_pickle=False) as data:
            given = {k: data[k] for k in data.files}
        names = [a.name for a in sess.get_inputs()]
        unknown = [k for k in given if k not in names]
        if unknown:
            raise ValueError(f"{inputs_path}: array(s) {unknown} name no input of the model; its inputs are {names}")
        both = [k for k in given if k in wanted]
        if both:
            raise ValueError(f"input(s) {both} are given in {inputs_path} and by --shape: give each once")
    feed = make_inputs(sess, shapes=wanted, skip=set(given))
    feed.update(given)
    return feed


def _peaks(provider_names) -> dict:
    """Peak rates for the share-of-peak columns: the CPU measured once and cached, a GPU from its datasheet."""
    from ortgpu.profiling.cost import cached_cpu_peak, gpu_peak
    peaks = {"cpu": cached_cpu_peak()}
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
                       node_block_list: str | None, list_kept: bool = False) -> int:
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
    if list_kept:
        for name, op, why in report.kept_float32:
            print(f"  float32: {op} {name!r}: {why}")
    else:
        for line in kept_summary(report.kept_float32):
            print(line)
    return 0


def kept_summary(kept, top: int = 12, named: int = 3) -> list[str]:
    """The nodes kept in float32 grouped by op type and reason (names quoted in a reason are
    elided so that nodes of one kind group together), most frequent first; a group of at most
    `named` nodes names them, a larger one counts them."""
    import re
    groups: dict = collections.defaultdict(list)
    for name, op, why in kept:
        groups[(op, re.sub(r"'[^']*'", "'...'", why))].append(name)
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    lines = []
    for (op, why), names in ranked[:top]:
        who = f"{op} {', '.join(map(repr, names))}" if len(names) <= named else f"{len(names)} x {op}"
        lines.append(f"  float32: {who}: {why}")
    rest = sum(len(names) for _, names in ranked[top:])
    if rest:
        lines.append(f"  float32: {rest} more nodes of {len(ranked) - top} other kinds (--list-kept lists every node)")
    return lines


def _version() -> str:
    import ortgpu
    own = getattr(ortgpu, "__ortgpu_version__", None)
    if own and own != ortgpu.__version__:
        return f"ortgpu {own} (onnxruntime API {ortgpu.__version__})"
    return f"ortgpu {ortgpu.__version__}"


def _add_feed_args(p) -> None:
    p.add_argument("--inputs", help=".npz file with one array per input name")
    p.add_argument("--shape", action="append", metavar="NAME=DIMS",
                   help="shape of a generated input, e.g. x=1x3x640x640 (repeatable)")
    p.add_argument("--providers", help="comma-separated provider names (default: all available)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ortgpu", description="ortgpu: an ONNX runtime with onnxruntime's API")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="read text with PP-OCRv4 (shipped) on the best available provider")
    d.add_argument("--runs", type=int, default=1, help="timed runs after the first")
    d.add_argument("--providers", help="comma-separated provider names (default: all available)")
    r = sub.add_parser("run", help="run any model on given or generated inputs")
    r.add_argument("model")
    _add_feed_args(r)
    r.add_argument("--runs", type=int, default=10)
    r.add_argument("--compare", action="store_true", help="compare with onnxruntime when installed")
    pr = sub.add_parser("profile", help="profile a model: onnxruntime-format trace, summary, HTML report")
    pr.add_argument("model", nargs="?", help="the model (not with --compare)")
    pr.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                    help="print per-op-type time deltas of two traces (ortgpu's or onnxruntime's)")
    _add_feed_args(pr)
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
    cv.add_argument("--list-kept", action="store_true", help="list every node kept in float32 (default: a summary)")
    sv = sub.add_parser("serve", help="serve a Triton-layout model folder over KServe v2 REST + gRPC (extra 'serve')")
    sv.add_argument("repository")
    from ortgpu.serving.cli import add_arguments as _serve_arguments  # noqa: PLC0415 - no server imports here
    _serve_arguments(sv)
    from ortgpu.quantization import cli as quantize_cli
    quantize_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":  # outside the catch-all below: a server reports its own errors
        from ortgpu.serving.cli import run as _serve
        return _serve(args)
    try:
        if args.command == "quantize":
            return quantize_cli.run(args)
        if args.command == "demo":
            from ortgpu.demo import run_demo
            return run_demo(_providers_arg(args.providers), args.runs)
        if args.command == "convert":
            return convert_model_file(args.input, args.output, args.bf16, args.keep_io_types,
                                      args.op_block_list, args.node_block_list, args.list_kept)
        if args.command == "profile" and args.compare:
            return compare_profiles(*args.compare, skip_runs=args.warmup)
        if args.command == "profile":
            if not args.model:
                parser.error("profile needs a MODEL or --compare A.json B.json")
            return profile_model(args.model, args.inputs, _providers_arg(args.providers), args.runs,
                                 args.warmup, args.out, args.top, args.shape)
        return run_model(args.model, args.inputs, _providers_arg(args.providers), args.runs, args.compare,
                         args.shape)
    except Exception as e:
        print(f"ortgpu: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
