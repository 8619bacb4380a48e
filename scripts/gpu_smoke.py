"""gpu-smoke: one small model per kernel family on the CUDA provider, compared with ortgpu's CPU
provider, one line per family, in well under a minute.  The first thing a machine with a GPU runs
(scripts/gpu-check.sh smoke): it says which provider paths work at all before the long tiers.

    python scripts/gpu_smoke.py [--json FILE] [--double]

Each family line: ``family  ok|FAIL|ERROR  max_abs_err  ms_first  ms_next  nodes on the device``
(ms_first includes compiling the raw kernels).  ``--json`` appends one JSON object per family
as soon as it finishes (a killed run keeps what it did).  ``--double`` runs on the device double
of tests/device_double.py instead of CUDA: the default tests use it to keep this script working.
Exit status: 0 when every family matched, 1 otherwise.

Families: element-wise, GEMM (MatMul/Gemm), conv, attention (com.microsoft Attention and an
unfused softmax(QK^T)V), gather/scatter, resize, pooling, reductions, control flow (If, on the
CPU provider with the device around it), fp16, and CUDA graphs (warm-up, capture, replays of a
MatMul + Gather model: the cuBLAS binding and the deferred index flags of issue 12).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

F, H, I64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64
OPSET = 18


def _model(nodes, inputs, outputs, inits=(), opset=OPSET, ms=False):
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    g = helper.make_graph(nodes, "smoke", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(g, opset_imports=ops, ir_version=10)


def _rng():
    return np.random.default_rng(12)


def elementwise():
    nodes = [helper.make_node("Mul", ["x", "y"], ["a"]), helper.make_node("Tanh", ["a"], ["b"]),
             helper.make_node("Add", ["b", "x"], ["c"]), helper.make_node("Sigmoid", ["c"], ["d"]),
             helper.make_node("Where", ["m", "d", "x"], ["out"]), helper.make_node("Cast", ["out"], ["i"], to=I64)]
    x = _rng().standard_normal((4, 33)).astype(np.float32)
    feeds = {"x": x, "y": x[::-1].copy(), "m": x > 0}
    return _model(nodes, [("x", F, [4, 33]), ("y", F, [4, 33]), ("m", TensorProto.BOOL, [4, 33])],
                  [("out", F), ("i", I64)]), feeds, 1e-5


def gemm():
    r = _rng()
    w = r.standard_normal((64, 48)).astype(np.float32)
    b = r.standard_normal(48).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Gemm", ["m", "w2", "b"], ["y"], transB=1, alpha=0.5, beta=2.0),
             helper.make_node("MatMul", ["x3", "x3t"], ["z"])]
    x3 = r.standard_normal((3, 5, 7)).astype(np.float32)
    return _model(nodes, [("x", F, [8, 64]), ("x3", F, [3, 5, 7]), ("x3t", F, [3, 7, 5])], [("y", F), ("z", F)],
                  [("w", w), ("w2", r.standard_normal((48, 48)).astype(np.float32)), ("b", b)]), \
        {"x": r.standard_normal((8, 64)).astype(np.float32), "x3": x3,
         "x3t": np.ascontiguousarray(x3.transpose(0, 2, 1))}, 1e-3


def conv():
    r = _rng()
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "dw"], ["y"], group=6, kernel_shape=[3, 3])]
    return _model(nodes, [("x", F, [2, 3, 11, 9])], [("y", F)],
                  [("w", r.standard_normal((6, 3, 3, 3)).astype(np.float32)),
                   ("b", r.standard_normal(6).astype(np.float32)),
                   ("dw", r.standard_normal((6, 1, 3, 3)).astype(np.float32))]), \
        {"x": r.standard_normal((2, 3, 11, 9)).astype(np.float32)}, 1e-3


def attention():
    r = _rng()
    hidden, heads = 32, 4
    nodes = [helper.make_node("Attention", ["x", "w", "b"], ["y"], domain="com.microsoft", num_heads=heads),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Softmax", ["s"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["o"])]
    q = r.standard_normal((2, 4, 6, 8)).astype(np.float32)
    return _model(nodes, [("x", F, [2, 6, hidden]), ("q", F, [2, 4, 6, 8]), ("kt", F, [2, 4, 8, 6]),
                          ("v", F, [2, 4, 6, 8])], [("y", F), ("o", F)],
                  [("w", (r.standard_normal((hidden, 3 * hidden)) * 0.2).astype(np.float32)),
                   ("b", r.standard_normal(3 * hidden).astype(np.float32))], ms=True), \
        {"x": r.standard_normal((2, 6, hidden)).astype(np.float32), "q": q,
         "kt": r.standard_normal((2, 4, 8, 6)).astype(np.float32),
         "v": r.standard_normal((2, 4, 6, 8)).astype(np.float32)}, 1e-3


def gather_scatter():
    r = _rng()
    nodes = [helper.make_node("Gather", ["table", "ids"], ["g"], axis=0),
             helper.make_node("GatherND", ["g", "nd"], ["gn"]),
             helper.make_node("ScatterND", ["data", "sidx", "upd"], ["s"], reduction="add"),
             helper.make_node("ScatterElements", ["data", "eidx", "upd2"], ["se"], axis=1, reduction="max")]
    table = r.standard_normal((50, 16)).astype(np.float32)
    return _model(nodes, [("ids", I64, [3, 5]), ("nd", I64, [2, 2]), ("data", F, [6, 4]), ("sidx", I64, [3, 1]),
                          ("upd", F, [3, 4]), ("eidx", I64, [6, 2]), ("upd2", F, [6, 2])],
                  [("gn", F), ("s", F), ("se", F)], [("table", table)]), \
        {"ids": r.integers(-50, 50, (3, 5)), "nd": np.array([[0, 1], [2, 4]], np.int64),
         "data": r.standard_normal((6, 4)).astype(np.float32), "sidx": np.array([[1], [4], [1]], np.int64),
         "upd": r.standard_normal((3, 4)).astype(np.float32), "eidx": r.integers(0, 4, (6, 2)),
         "upd2": r.standard_normal((6, 2)).astype(np.float32)}, 1e-5


def resize():
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["n"], mode="nearest"),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["l"], mode="linear",
                              coordinate_transformation_mode="half_pixel")]
    return _model(nodes, [("x", F, [1, 2, 5, 7])], [("n", F), ("l", F)],
                  [("scales", np.array([1, 1, 2, 1.5], np.float32)), ("sizes", np.array([1, 2, 9, 4], np.int64))]), \
        {"x": _rng().standard_normal((1, 2, 5, 7)).astype(np.float32)}, 1e-5


def pooling():
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[2, 3], count_include_pad=1, pads=[0, 1, 0, 1]),
             helper.make_node("GlobalAveragePool", ["x"], ["g"])]
    return _model(nodes, [("x", F, [2, 3, 9, 8])], [("m", F), ("a", F), ("g", F)]), \
        {"x": _rng().standard_normal((2, 3, 9, 8)).astype(np.float32)}, 1e-5


def reductions():
    axes = np.array([1], np.int64)
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
             helper.make_node("ReduceMax", ["x", "max_axes"], ["m"]),
             helper.make_node("ReduceMean", ["x"], ["mean"], keepdims=1),
             helper.make_node("ArgMax", ["x"], ["am"], axis=2),
             helper.make_node("Softmax", ["x"], ["sm"], axis=-1),
             helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1)]
    r = _rng()
    return _model(nodes, [("x", F, [3, 37, 65])], [("s", F), ("m", F), ("mean", F), ("am", I64), ("sm", F), ("ln", F)],
                  [("axes", axes), ("max_axes", np.array([0, 2], np.int64)), ("gamma", r.standard_normal(65).astype(np.float32)),
                   ("beta", r.standard_normal(65).astype(np.float32))]), \
        {"x": r.standard_normal((3, 37, 65)).astype(np.float32)}, 1e-4


def control_flow():
    then = helper.make_graph([helper.make_node("Neg", ["a"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", F, None)])
    other = helper.make_graph([helper.make_node("Abs", ["a"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", F, None)])
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    return _model(nodes, [("x", F, [4, 5])], [("y", F)], [("zero", np.array(0, np.float32))]), \
        {"x": _rng().standard_normal((4, 5)).astype(np.float32) + 0.3}, 1e-6


def fp16():
    r = _rng()
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Gelu", ["a"], ["g"]) if OPSET >= 20 else helper.make_node("Relu", ["a"], ["g"]),
             helper.make_node("Softmax", ["g"], ["y"], axis=-1)]
    return _model(nodes, [("x", H, [8, 32])], [("y", H)],
                  [("w", (r.standard_normal((32, 16)) * 0.2).astype(np.float16)),
                   ("b", r.standard_normal(16).astype(np.float16))]), \
        {"x": r.standard_normal((8, 32)).astype(np.float16)}, 2e-2


FAMILIES = [("elementwise", elementwise), ("gemm", gemm), ("conv", conv), ("attention", attention),
            ("gather_scatter", gather_scatter), ("resize", resize), ("pooling", pooling),
            ("reductions", reductions), ("control_flow", control_flow), ("fp16", fp16)]


def _max_err(got, want) -> float:
    err = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape or g.dtype != w.dtype:
            return float("inf")
        if g.size:
            err = max(err, float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))))
    return err


def _device_nodes(sess) -> tuple[int, int]:
    """(nodes placed off the CPU provider, nodes) of the session's host-input plan."""
    items = [it for it in sess._core.plan.partition.items if getattr(it, "node", None) is not None]
    return sum(1 for it in items if it.provider.device != "cpu"), len(items)


def run_family(name, make, providers, cpu) -> dict:
    import ortgpu
    model, feeds, tol = make()
    data = model.SerializeToString()
    row = {"family": name}
    try:
        want = ortgpu.InferenceSession(data, providers=cpu()).run(None, feeds)
        sess = ortgpu.InferenceSession(data, providers=providers())
        t0 = time.perf_counter()
        got = sess.run(None, feeds)
        t1 = time.perf_counter()
        got = sess.run(None, feeds)
        t2 = time.perf_counter()
        err = _max_err(got, want)
        on, total = _device_nodes(sess)
        status = "ok" if err <= tol and on else "FAIL"
        row.update(status=status, max_abs_err=err, tol=tol, ms_first=round((t1 - t0) * 1e3, 2),
                   ms_next=round((t2 - t1) * 1e3, 3), device_nodes=f"{on}/{total}")
        if not on:
            row["error"] = "no node ran on the device"
    except Exception as e:  # noqa: BLE001 - one line per family, whatever breaks
        row.update(status="ERROR", error=f"{type(e).__name__}: {str(e)[:300]}")
    return row


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def run_graphs(cuda_providers, cpu) -> dict:
    """CUDA graphs: 2 warm-ups, a capture, replays with new inputs; no fallback warning."""
    import ortgpu
    r = _rng()
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
             helper.make_node("MatMul", ["e", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    model = _model(nodes, [("ids", I64, [4])], [("y", F)],
                   [("table", r.standard_normal((20, 16)).astype(np.float32)),
                    ("w", r.standard_normal((16, 8)).astype(np.float32))]).SerializeToString()
    row = {"family": "cuda_graphs"}
    handler = _Warnings()
    log = logging.getLogger("ortgpu")
    log.addHandler(handler)
    try:
        ref = ortgpu.InferenceSession(model, providers=cpu())
        sess = ortgpu.InferenceSession(model, providers=cuda_providers())
        err = 0.0
        t0 = time.perf_counter()
        for i in range(6):
            ids = r.integers(0, 20, 4)
            err = max(err, _max_err(sess.run(None, {"ids": ids}), ref.run(None, {"ids": ids})))
        ms = (time.perf_counter() - t0) * 1e3
        failed = [m for m in handler.messages if "capture failed" in m]
        captured = sorted(getattr(getattr(sess._core, "graphs", None), "captured", {}) or {})
        ok = err <= 1e-3 and not failed and captured == [0]
        row.update(status="ok" if ok else "FAIL", max_abs_err=err, tol=1e-3, ms_first=round(ms, 2),
                   captured=captured, fallback=failed[:1])
    except Exception as e:  # noqa: BLE001
        row.update(status="ERROR", error=f"{type(e).__name__}: {str(e)[:300]}")
    finally:
        log.removeHandler(handler)
    return row


def _line(row) -> str:
    if row["status"] == "ERROR":
        return f"{row['family']:15s} ERROR  {row['error']}"
    extra = f" captured={row['captured']} fallback={row['fallback']}" if "captured" in row else \
        f" next={row['ms_next']:.3f}ms device_nodes={row['device_nodes']}"
    return (f"{row['family']:15s} {row['status']:5s} max_err={row['max_abs_err']:.3g} (tol {row['tol']:g}) "
            f"first={row['ms_first']:.1f}ms{extra}")


def providers_for(double: bool):
    """(device providers factory, CPU providers factory, graph-enabled providers factory or None)."""
    if double:
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "tests"))
        from support import device_double
        return device_double.providers, lambda: ["CPUExecutionProvider"], None
    cuda = ("CUDAExecutionProvider", {"use_tf32": "0"})
    return (lambda: [cuda, "CPUExecutionProvider"], lambda: ["CPUExecutionProvider"],
            lambda: [("CUDAExecutionProvider", {"use_tf32": "0", "enable_cuda_graph": "1"}),
                     "CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="append one JSON object per family to this file")
    ap.add_argument("--double", action="store_true", help="run on the device double, not CUDA")
    args = ap.parse_args(argv)
    device, cpu, graphs = providers_for(args.double)
    if not args.double:
        import ortgpu
        if "CUDAExecutionProvider" not in ortgpu.get_available_providers():
            print("gpu-smoke: CUDAExecutionProvider is not available here (no CuPy or no GPU): nothing to test")
            return 2
    t0 = time.perf_counter()
    rows = []
    jobs = [(lambda n=n, m=m: run_family(n, m, device, cpu)) for n, m in FAMILIES]
    if graphs is not None:
        jobs.append(lambda: run_graphs(graphs, cpu))
    for job in jobs:
        row = job()
        rows.append(row)
        print(_line(row), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    bad = [r["family"] for r in rows if r["status"] != "ok"]
    print(f"gpu-smoke: {len(rows) - len(bad)}/{len(rows)} families ok in {time.perf_counter() - t0:.1f} s"
          + (f"; not ok: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
