"""`ortgpu quantize`: the common cases from the command line (dynamic, static QDQ/QOperator with
calibration feeds from .npz files or generated ones, 4-bit weight-only), printing file sizes and,
on request, the per-tensor accuracy report."""
from __future__ import annotations

import os

import numpy as np

from ortgpu.quantization.calibration import FeedListReader


class FeedReader(FeedListReader):
    """Feeds from .npz files (one array per input name), or `count` generated ones."""

    def __init__(self, model_path: str, npz_paths, count: int, seed: int = 0):
        if npz_paths:
            feeds = []
            for p in npz_paths:
                with np.load(p, allow_pickle=False) as data:
                    feeds.append({k: data[k] for k in data.files})
        else:
            import ortgpu
            from ortgpu.sample_inputs import make_inputs
            sess = ortgpu.InferenceSession(model_path, providers=["CPUExecutionProvider"])
            feeds = [make_inputs(sess, seed=seed + i) for i in range(count)]
        super().__init__(feeds)


def add_parser(sub):
    q = sub.add_parser("quantize", help="quantize a float model (dynamic, static QDQ/QOperator, int4 weight-only)")
    q.add_argument("input")
    q.add_argument("output")
    q.add_argument("--mode", choices=("dynamic", "static", "int4"), default="dynamic")
    q.add_argument("--format", choices=("QDQ", "QOperator"), default="QDQ", help="static only")
    q.add_argument("--activation-type", default="QUInt8", help="a QuantType name (static only)")
    q.add_argument("--weight-type", default="QInt8", help="a QuantType name")
    q.add_argument("--per-channel", action="store_true")
    q.add_argument("--reduce-range", action="store_true")
    q.add_argument("--method", default="MinMax", help="calibration method: MinMax, Entropy, Percentile, Distribution")
    q.add_argument("--calibration", nargs="*", help=".npz feeds for calibration (default: generated)")
    q.add_argument("--samples", type=int, default=8, help="generated calibration feeds when none are given")
    q.add_argument("--exclude", help="comma-separated node names left in float")
    q.add_argument("--block-size", type=int, default=128, help="int4 only")
    q.add_argument("--symmetric", action="store_true", help="int4 only: no zero points")
    q.add_argument("--accuracy-level", type=int, default=None, help="int4 only")
    q.add_argument("--report", action="store_true", help="static QDQ: print the per-tensor error report")
    return q


def run(args) -> int:
    from ortgpu import quantization as oq
    exclude = [s for s in (args.exclude or "").split(",") if s]
    if args.mode == "dynamic":
        oq.quantize_dynamic(args.input, args.output, per_channel=args.per_channel, reduce_range=args.reduce_range,
                            weight_type=oq.QuantType[args.weight_type], nodes_to_exclude=exclude)
    elif args.mode == "int4":
        q = oq.MatMulNBitsQuantizer(args.input, block_size=args.block_size, is_symmetric=args.symmetric,
                                    accuracy_level=args.accuracy_level, nodes_to_exclude=exclude)
        q.process_and_save(args.output)
    else:
        reader = FeedReader(args.input, args.calibration, args.samples)
        oq.quantize_static(args.input, args.output, reader, quant_format=oq.QuantFormat[args.format],
                           per_channel=args.per_channel, reduce_range=args.reduce_range,
                           activation_type=oq.QuantType[args.activation_type],
                           weight_type=oq.QuantType[args.weight_type], nodes_to_exclude=exclude,
                           calibrate_method=oq.CalibrationMethod[args.method])
        if args.report and args.format == "QDQ":
            reader.rewind()
            print(oq.format_report(oq.qdq_error_report(args.input, args.output, reader)))
    before, after = os.path.getsize(args.input), os.path.getsize(args.output)
    print(f"{args.input}: {before} bytes -> {args.output}: {after} bytes ({after / before:.1%})")
    return 0
