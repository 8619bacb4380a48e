"""The CUDA provider's raw kernels for data movement, indexing, resize, pooling and reductions
against the shared kernel on CuPy (what runs without them) and PyTorch, same GPU, same run.

    python benchmarks/bench_cuda_ops.py [--runs N] [--warmup N] [--only Transpose,Gather] [--json OUT]

For each case it prints the median CUDA-event time (ms) of one call of:
- ``raw_ms``: the registered provider="cuda" kernel (the launcher and its raw kernels);
- ``cupy_ms``: the shared kernel of ``providers/kernels`` on CuPy arrays, its outputs made
  contiguous (``cupy.ascontiguousarray``; Transpose, Slice and Split return views there) so
  both sides deliver the same arrays;
- ``torch_ms``: the nearest PyTorch eager equivalent (``-`` when there is none);
and the ratios ``raw / cupy`` and ``raw / torch`` (below 1: the raw kernel is faster).
Inputs are made on the device before timing; shape inputs (Slice's starts, Split's sizes,
Resize's scales) stay NumPy arrays, as the partitioner keeps them on the host.

With no GPU (no CuPy or no device) it prints why and exits with 2.

NOT YET RUN ON A GPU: written without a device; expect to adjust it on the first GPU run.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_gpu import _fmt, time_torch, time_with_events  # noqa: E402
from common import cuda_problem, write_json  # noqa: E402

F16, F32 = np.float16, np.float32


def _rand(rng, shape, dtype=F32):
    return rng.standard_normal(shape).astype(dtype)


# (label, op, opset, inputs(rng) -> list, attrs, outputs, torch(torch module, *inputs as tensors) or None)
CASES = [
    ("Transpose fp16 (64,512,768) perm 0,2,1", "Transpose", 13,
     lambda r: [_rand(r, (64, 512, 768), F16)], {"perm": (0, 2, 1)}, 1,
     lambda torch, x: x.permute(0, 2, 1).contiguous()),
    ("Transpose fp32 (8,128,12,64) perm 0,2,1,3", "Transpose", 13,
     lambda r: [_rand(r, (8, 128, 12, 64))], {"perm": (0, 2, 1, 3)}, 1,
     lambda torch, x: x.permute(0, 2, 1, 3).contiguous()),
    ("Concat fp32 3x(32,256,56,56) axis 1", "Concat", 13,
     lambda r: [_rand(r, (32, 256, 56, 56)) for _ in range(3)], {"axis": 1}, 1,
     lambda torch, *xs: torch.cat(xs, dim=1)),
    ("Split fp16 (8,128,2304) into 3 on axis -1", "Split", 18,
     lambda r: [_rand(r, (8, 128, 2304), F16)], {"axis": -1, "num_outputs": 3}, 3,
     lambda torch, x: tuple(t.contiguous() for t in x.split(768, dim=-1))),
    ("Slice fp32 (32,512,1024) [:, 1:-1:2, ::-1]", "Slice", 13,
     lambda r: [_rand(r, (32, 512, 1024)), np.array([1, -1]), np.array([-1, -2 ** 62]),
                np.array([1, 2]), np.array([2, -1])], {}, 1,
     lambda torch, x, *_: x[:, 1:-1:2].flip(-1).contiguous()),
    ("Gather fp16 embedding (50257,768) x (32,128)", "Gather", 13,
     lambda r: [_rand(r, (50257, 768), F16), r.integers(0, 50257, (32, 128))], {"axis": 0}, 1,
     lambda torch, w, i: torch.nn.functional.embedding(i, w)),
    ("GatherND fp32 (64,1024,64) by (64,256,1) batch_dims 1", "GatherND", 13,
     lambda r: [_rand(r, (64, 1024, 64)), r.integers(0, 1024, (64, 256, 1))], {"batch_dims": 1}, 1, None),
    ("ScatterND fp32 add (4096,1024) by 8192 rows", "ScatterND", 18,
     lambda r: [_rand(r, (4096, 1024)), r.integers(0, 4096, (8192, 1)), _rand(r, (8192, 1024))],
     {"reduction": "add"}, 1, None),
    ("Resize nearest x2 fp16 (16,256,64,64)", "Resize", 13,
     lambda r: [_rand(r, (16, 256, 64, 64), F16), None, np.array([1, 1, 2, 2], F32)],
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, 1,
     lambda torch, x, *_: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")),
    ("Resize linear x2 fp32 (16,64,128,128)", "Resize", 13,
     lambda r: [_rand(r, (16, 64, 128, 128)), None, np.array([1, 1, 2, 2], F32)], {"mode": "linear"}, 1,
     lambda torch, x, *_: torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")),
    ("MaxPool 3x3/2 pad 1 fp32 (32,64,112,112)", "MaxPool", 12,
     lambda r: [_rand(r, (32, 64, 112, 112))], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 1,
     lambda torch, x: torch.nn.functional.max_pool2d(x, 3, 2, 1)),
    ("AveragePool 3x3/1 pad 1 fp16 (32,192,35,35)", "AveragePool", 19,
     lambda r: [_rand(r, (32, 192, 35, 35), F16)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 1,
     lambda torch, x: torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)),
    ("GlobalAveragePool fp32 (32,2048,7,7)", "GlobalAveragePool", 22,
     lambda r: [_rand(r, (32, 2048, 7, 7))], {}, 1, lambda torch, x: x.mean((2, 3), keepdim=True)),
    ("ReduceMean last axis fp16 (4096,768)", "ReduceMean", 18,
     lambda r: [_rand(r, (4096, 768), F16), np.array([-1])], {}, 1, lambda torch, x, *_: x.float().mean(-1, keepdim=True).half()),
    ("ReduceSum axis 0 fp32 (8192,1024)", "ReduceSum", 13,
     lambda r: [_rand(r, (8192, 1024)), np.array([0])], {"keepdims": 0}, 1, lambda torch, x, *_: x.sum(0)),
    ("ReduceMax axes 0,2 fp32 (64,256,512)", "ReduceMax", 18,
     lambda r: [_rand(r, (64, 256, 512)), np.array([0, 2])], {}, 1, lambda torch, x, *_: x.amax((0, 2), keepdim=True)),
    ("ReduceLogSumExp last axis fp32 (1024,50257)", "ReduceLogSumExp", 18,
     lambda r: [_rand(r, (1024, 50257)), np.array([-1])], {}, 1, lambda torch, x, *_: x.logsumexp(-1, keepdim=True)),
]


def problem() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    return cuda_problem()


def device_input(op: str, i: int, x) -> bool:
    """Whether input ``i`` of ``op`` lives on the device: data and index tensors do, shape
    inputs (Slice's starts..., Split's sizes, Resize's scales, Reduce's axes) stay on the host."""
    return x is not None and (i == 0 or op in ("Concat", "Gather", "GatherND", "ScatterND"))


def _contiguous(cupy, value):
    if isinstance(value, tuple):
        return tuple(cupy.ascontiguousarray(v) for v in value)
    return cupy.ascontiguousarray(value)


def bench_case(case, args) -> dict:
    """Times of one case (ms) and its ratios."""
    import cupy  # noqa: PLC0415

    import ortgpu  # noqa: F401, PLC0415  (registers the kernels)
    from ortgpu.providers import registry  # noqa: PLC0415
    from ortgpu.providers.registry import KernelContext  # noqa: PLC0415

    label, op, opset, make, attrs, outputs, torch_fn = case
    host = make(np.random.default_rng(0))
    on_device = [device_input(op, i, x) for i, x in enumerate(host)]
    dev = [cupy.asarray(x) if d else x for x, d in zip(host, on_device)]
    ctx = KernelContext(cupy, "cuda", op_type=op, opset=opset, num_outputs=outputs,
                        output_present=(True,) * outputs)
    raw = registry.lookup(op, "", opset, ("cuda",)).fn
    shared = registry.lookup(op, "", opset, (registry.SHARED,)).fn
    stream = cupy.cuda.get_current_stream()
    _, raw_ms = time_with_events(lambda: raw(ctx, *dev, **attrs), stream, args.runs, args.warmup)
    _, cupy_ms = time_with_events(lambda: _contiguous(cupy, shared(ctx, *dev, **attrs)), stream,
                                  args.runs, args.warmup)
    torch_ms = None
    if torch_fn is not None:
        try:
            import torch  # noqa: PLC0415
            if torch.cuda.is_available():
                tens = [torch.as_tensor(x, device="cuda") if d else x for x, d in zip(host, on_device)]
                with torch.inference_mode():
                    _, torch_ms = time_torch(lambda: torch_fn(torch, *tens), args.runs, args.warmup)
        except ImportError:
            pass
    return {"case": label, "op": op, "raw_ms": raw_ms, "cupy_ms": cupy_ms, "torch_ms": torch_ms,
            "raw_over_cupy": raw_ms / cupy_ms if cupy_ms else None,
            "raw_over_torch": raw_ms / torch_ms if torch_ms else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated op types to run (default: all)")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args(argv)
    why = problem()
    if why:
        print(f"bench_cuda_ops: cannot run here: {why}.", file=sys.stderr)
        return 2
    only = {s for s in args.only.split(",") if s}
    rows = []
    print(f"{'case':52s} {'raw_ms':>8s} {'cupy_ms':>8s} {'torch_ms':>8s} {'raw/cupy':>8s} {'raw/torch':>9s}")
    for case in CASES:
        if only and case[1] not in only:
            continue
        r = bench_case(case, args)
        rows.append(r)
        print(f"{r['case']:52s} {_fmt(r['raw_ms'], '8.3f')} {_fmt(r['cupy_ms'], '8.3f')} "
              f"{_fmt(r['torch_ms'], '8.3f')} {_fmt(r['raw_over_cupy'], '8.2f')} {_fmt(r['raw_over_torch'], '9.2f')}")
    if args.json:
        write_json(args.json, {"results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
