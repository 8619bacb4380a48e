"""The models onnxruntime's quantization tool wrote (tests/data/quantized/*.onnx with their .npz
feeds): ortgpu's CPU provider against onnxruntime's, in the same process, runs alternating,
min and median of N runs each (issue 17).

    python benchmarks/bench_quantized_cpu.py [--runs 50] [--models a,b] [--forms]

--forms adds, per node that keeps prepared constant forms (KernelContext.prepared), its time with
the forms kept against made on every run (the session's forms switched off for that node),
alternating in one process.
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time
import timeit

import numpy as np

import ortgpu

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DATA = os.path.join(HERE, "..", "tests", "data", "quantized")

from common import load_average  # noqa: E402


def compare(path, feed, runs):
    """(ortgpu times, onnxruntime times) in seconds, runs alternating after 3 warm-up runs each."""
    import onnxruntime as ort
    mine = ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for _ in range(3):
        mine.run(None, feed)
        theirs.run(None, feed)
    t_mine, t_ort = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        mine.run(None, feed)
        t1 = time.perf_counter()
        theirs.run(None, feed)
        t_mine.append(t1 - t0)
        t_ort.append(time.perf_counter() - t1)
    return t_mine, t_ort


def forms_effect(path, feed):
    """Per node with kept forms: (op type, us with them kept, us with them made per run)."""
    from ortgpu.executor import call_step, store_outputs
    sess = ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"])
    sess.run(None, feed)
    plan = sess._core.plan
    vals = plan.seed([feed[n] for n in plan.input_names], None)
    rows = []
    with np.errstate(all="ignore"):
        for st in plan.steps:
            res = call_step(st, vals)
            ctx = st.ctx
            if ctx is not None and ctx._forms:
                kept, store = dict(ctx._forms), ctx.constant_forms
                on, off = [], []
                for _ in range(7):
                    ctx._forms.update(kept)
                    ctx.constant_forms = store
                    on.append(min(timeit.repeat(lambda: call_step(st, vals), number=100, repeat=3)) / 100)
                    ctx._forms.clear()
                    ctx.constant_forms = None
                    off.append(min(timeit.repeat(lambda: call_step(st, vals), number=100, repeat=3)) / 100)
                ctx._forms.update(kept)
                ctx.constant_forms = store
                rows.append((st.node.op_type, min(on) * 1e6, min(off) * 1e6))
            store_outputs(st, vals, res)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--models", help="comma-separated names (default: every model in tests/data/quantized)")
    ap.add_argument("--forms", action="store_true", help="per node: prepared forms kept vs made per run")
    args = ap.parse_args(argv)
    names = args.models.split(",") if args.models else sorted(
        os.path.basename(p)[:-5] for p in glob.glob(os.path.join(DATA, "*.onnx")))
    print(f"load: {load_average()}")
    print("| model | ortgpu min / median (ms) | onnxruntime min / median (ms) | ratio of medians |")
    print("|---|---:|---:|---:|")
    for name in names:
        path = os.path.join(DATA, f"{name}.onnx")
        feed = dict(np.load(os.path.join(DATA, f"{name}.npz")))
        t_mine, t_ort = compare(path, feed, args.runs)
        m_mine, m_ort = statistics.median(t_mine), statistics.median(t_ort)
        print(f"| {name} | {min(t_mine) * 1e3:.3f} / {m_mine * 1e3:.3f} | {min(t_ort) * 1e3:.3f} / "
              f"{m_ort * 1e3:.3f} | {m_mine / m_ort:.2f}x |", flush=True)
        if args.forms:
            for op, on, off in forms_effect(path, feed):
                print(f"|   {op}: forms kept {on:.1f} us, made per run {off:.1f} us | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
