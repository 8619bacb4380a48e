"""ortgpu's CPU provider against onnxruntime's CPU provider, measured in the same run.

    python benchmarks/bench_cpu.py [--runs N] [--json OUT] [--no-zoo]

Prints a markdown table of median latencies (after WARMUP runs of each session), the ratio
ortgpu/onnxruntime and each runtime's run-to-run spread (max/min over the timed runs), then the
median and geometric-mean ratios and the per-node overhead on a chain of 1,000 small Add nodes.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

import ortgpu
from ortgpu.sample_inputs import make_inputs

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import git_commit, load_average, machine, timed_runs, write_json  # noqa: E402


def light_models() -> dict[str, str]:
    import onnx.backend.test as suite
    d = os.path.join(os.path.dirname(suite.__file__), "data", "light")
    names = ["resnet50", "squeezenet", "shufflenet", "inception_v1", "densenet121"]
    return {f"light_{n}": os.path.join(d, f"light_{n}.onnx") for n in names}


def zoo_models() -> dict[str, tuple[str, dict]]:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from support.model_zoo import model_path  # noqa: PLC0415
    rng = np.random.default_rng(0)
    img = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return {
        "ppocrv4_det 1x3x480x640": (model_path("ppocrv4_det"), {"x": img(1, 3, 480, 640)}),
        "ppocrv4_rec 1x3x48x320": (model_path("ppocrv4_rec"), {"x": img(1, 3, 48, 320)}),
        "ppocr_cls 6x3x48x192": (model_path("ppocr_cls"), {"x": img(6, 3, 48, 192)}),
        "silero_vad 1x512": (model_path("silero_vad"), {
            "input": img(1, 512), "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, dtype=np.int64)}),
    }


def quantized_models() -> dict[str, tuple[str, dict]]:
    """Models quantized by onnxruntime's tools (tests/data/quantized/): the com.microsoft
    quantized ops (QLinear*, QGemm, QAttention, MatMulNBits, ...)."""
    d = os.path.join(HERE, "..", "tests", "data", "quantized")
    names = ["cnn_static_qoperator_u8", "cnn_static_qdq_u8_fused", "bert_block_dynamic_fused", "mlp_nbits4_sym",
             "embedding_nbits4", "lstm_dynamic"]
    return {f"quantized {n}": (os.path.join(d, f"{n}.onnx"), dict(np.load(os.path.join(d, f"{n}.npz"))))
            for n in names}


def contrib_models() -> dict[str, tuple[str, dict]]:
    """The BERT / GPT-2 that onnxruntime's transformer optimizer fused into com.microsoft ops
    (tests/data/contrib, scripts/make_contrib_models.py), batch 4 x 32 tokens."""
    d = os.path.join(HERE, "..", "tests", "data", "contrib")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 96, size=(4, 32)).astype(np.int64)
    ones = np.ones_like(ids)
    bert = {"input_ids": ids, "attention_mask": ones, "token_type_ids": np.zeros_like(ids)}
    gpt2 = {"input_ids": ids, "attention_mask": ones}
    return {f"{m}_{p} 4x32 (com.microsoft)": (os.path.join(d, f"{m}_{p}.onnx"), feed)
            for m, feed in (("bert", bert), ("gpt2", gpt2)) for p in ("fp32", "fp16")}


def torch_models() -> dict[str, tuple[onnx.ModelProto, dict]]:
    """The all-MiniLM-L6-v2-shaped sentence encoder as torch.onnx.export writes it (BERT, 6 layers,
    hidden 384), rebuilt from its committed skeleton with seeded weights (benchmarks/minilm.py),
    at the batch a user measured: 3 sentences of 10 tokens."""
    from minilm import load_minilm, minilm_feed  # noqa: PLC0415
    model = load_minilm("minilm_l6")
    return {"minilm_l6 3x10 (torch export)": (model, minilm_feed(model, batch=3, sequence=10))}


def add_chain(n: int = 1000) -> onnx.ModelProto:
    nodes = [helper.make_node("Add", [f"t{i}", "one"], [f"t{i + 1}"]) for i in range(n)]
    g = helper.make_graph(nodes, "add_chain",
                          [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, [4])],
                          [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


# Untimed runs of each session first: both runtimes' runs are 10-25% slower for their first
# ten or so (a fresh session of silero VAD or the 4x32 BERT settles by its 8th-11th run), and
# the spread is meant to show the steady state's run-to-run variation, not that warm-up.
WARMUP = 10


def bench_pair(model, feed, runs):
    """(ortgpu's median, onnxruntime's median, ortgpu's max/min, onnxruntime's max/min)."""
    import onnxruntime as ort
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    if feed is None:
        feed = make_inputs(mine)
    mine_times = timed_runs(lambda: mine.run(None, feed), runs, warmup=WARMUP)
    try:
        theirs = ort.InferenceSession(model if isinstance(model, str) else model.SerializeToString(),
                                      providers=["CPUExecutionProvider"])
        their_times = timed_runs(lambda: theirs.run(None, feed), runs, warmup=WARMUP)
    except Exception as e:  # onnxruntime refuses a few models ortgpu runs
        print(f"  onnxruntime could not run it: {type(e).__name__}", file=sys.stderr)
        their_times = [float("nan")]
    return (statistics.median(mine_times), statistics.median(their_times), max(mine_times) / min(mine_times),
            max(their_times) / min(their_times))


# The models the CPU targets are stated over (issue 17's list: the light models, PP-OCR det/rec/cls,
# silero, an optimize_model BERT, an all-MiniLM-style torch export); the others (quantized,
# float16, GPT-2) are measured and reported beside them.
TARGET_SET = ("light_", "ppocr", "silero_vad", "bert_fp32", "minilm_l6")


def in_target_set(name: str) -> bool:
    return name.startswith(TARGET_SET)


def summarize(rows) -> dict:
    """Median and geometric mean of the ratios, over the target set and over every model."""
    out = {}
    for label, chosen in (("target_set", [r for r in rows if in_target_set(r["model"])]), ("all", rows)):
        ratios = [r["ratio"] for r in chosen if r["ratio"] == r["ratio"]]
        out[label] = {"models": len(ratios),
                      "median_ratio": statistics.median(ratios) if ratios else float("nan"),
                      "geomean_ratio": math.exp(statistics.fmean(math.log(r) for r in ratios)) if ratios
                      else float("nan"),
                      "max_ratio": max(ratios) if ratios else float("nan")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--no-zoo", action="store_true", help="skip the models fetched from pinned wheels")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    rows = []
    load_before = load_average()
    cases = {k: (v, None) for k, v in light_models().items()}
    cases.update(quantized_models())
    cases.update(contrib_models())
    cases.update(torch_models())
    if not args.no_zoo:
        cases.update(zoo_models())
    print(f"| model | ortgpu CPU (ms) | onnxruntime {ort.__version__} CPU (ms) | ratio | ortgpu max/min "
          "| onnxruntime max/min |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (model, feed) in cases.items():
        t_mine, t_ort, spread, their_spread = bench_pair(model, feed, args.runs)
        rows.append({"model": name, "target_set": in_target_set(name), "ortgpu_ms": t_mine * 1e3,
                     "onnxruntime_ms": t_ort * 1e3, "ratio": t_mine / t_ort, "ortgpu_spread": spread,
                     "onnxruntime_spread": their_spread})
        mark = "" if in_target_set(name) else " *"
        print(f"| {name}{mark} | {t_mine * 1e3:.2f} | {t_ort * 1e3:.2f} | {t_mine / t_ort:.2f}x | {spread:.2f}x "
              f"| {their_spread:.2f}x |", flush=True)
    summary = summarize(rows)
    print("\n* measured beside the target set (quantized, float16, GPT-2)")
    for label, s in summary.items():
        print(f"{label.replace('_', ' ')} ({s['models']} models): median ratio ortgpu/onnxruntime "
              f"{s['median_ratio']:.2f}x, geometric mean {s['geomean_ratio']:.2f}x, largest {s['max_ratio']:.2f}x")

    n = 1000
    t_mine, t_ort, _, _ = bench_pair(add_chain(n), None, max(args.runs, 20))
    overhead = {"ortgpu_us_per_node": t_mine / n * 1e6, "onnxruntime_us_per_node": t_ort / n * 1e6}
    print(f"per-node overhead (chain of {n} Add on 4 floats): ortgpu {overhead['ortgpu_us_per_node']:.2f} us, "
          f"onnxruntime {overhead['onnxruntime_us_per_node']:.2f} us "
          f"({t_mine / t_ort:.2f}x)")
    if args.json:
        write_json(args.json, {"date": datetime.date.today().isoformat(), "commit": git_commit(),
                               "machine": machine(), "onnxruntime": ort.__version__, "numpy": np.__version__,
                               "warmup_runs": WARMUP, "load": {"before": load_before, "after": load_average()},
                               "models": rows, "summary": summary, "add_chain": overhead}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
