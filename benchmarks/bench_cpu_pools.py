"""The pooling nodes of the CPU benchmark models, one node per session: onnxruntime's CPU
provider, ortgpu's NumPy body (ORTGPU_JIT=0) and ortgpu's compiled body, timed in the same
process and alternating, so that other work on the machine slows all three alike.

    python benchmarks/bench_cpu_pools.py [--runs N] [--models N]

Prints min and median per run (ms) of each and the load average before and after; with
--models, also whole runs of the light models whose pools these are (N runs each; they have no
depthwise convolution, so ORTGPU_JIT=0 differs from the compiled run in the pools only).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

import ortgpu

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import load_average  # noqa: E402

MAX3S2 = {"kernel_shape": [3, 3], "strides": [2, 2]}
MAX3S1P1 = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}
CASES = [  # (where it comes from, op, input shape, attributes)
    ("resnet50", "MaxPool", (1, 64, 112, 112), dict(MAX3S2, pads=[1, 1, 1, 1])),
    ("squeezenet", "MaxPool", (1, 64, 111, 111), MAX3S2),
    ("squeezenet", "MaxPool", (1, 128, 55, 55), MAX3S2),
    ("inception_v1", "MaxPool", (1, 64, 112, 112), MAX3S2),
    ("inception_v1", "MaxPool", (1, 192, 55, 55), MAX3S2),
    ("inception_v1", "MaxPool", (1, 256, 27, 27), MAX3S1P1),
    ("inception_v1", "MaxPool", (1, 512, 13, 13), MAX3S1P1),
    ("inception_v1", "MaxPool", (1, 832, 6, 6), MAX3S1P1),
    ("inception_v1", "AveragePool", (1, 1024, 6, 6), {"kernel_shape": [7, 7], "pads": [0, 0, 1, 1]}),
    ("resnet50", "AveragePool", (1, 2048, 7, 7), {"kernel_shape": [7, 7]}),
    ("shufflenet", "AveragePool", (1, 24, 56, 56), {"kernel_shape": [3, 3], "strides": [2, 2],
                                                    "pads": [1, 1, 1, 1]}),
    ("densenet121", "AveragePool", (1, 128, 56, 56), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("ppocrv4_rec", "AveragePool", (1, 480, 3, 80), {"kernel_shape": [3, 2], "strides": [3, 2]}),
    ("squeezenet", "GlobalAveragePool", (1, 1000, 13, 13), {}),
    ("ppocr_cls", "GlobalAveragePool", (6, 200, 3, 12), {}),
    ("ppocr_cls", "GlobalAveragePool", (6, 8, 24, 96), {}),
    ("ppocrv4_det", "GlobalAveragePool", (1, 96, 120, 160), {}),
    ("-", "GlobalMaxPool", (1, 256, 28, 28), {}),
]


def one_node(op, shape, attrs) -> bytes:
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


def set_jit(on: bool) -> None:
    os.environ["ORTGPU_JIT"] = "1" if on else "0"


def node_case(case):
    _, op, shape, attrs = case
    return one_node(op, shape, attrs), {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def measure(model, feed, runs: int) -> dict[str, list[float]]:
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    ours = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    contenders = {
        "onnxruntime": lambda: ref.run(None, feed),
        "numpy": lambda: (set_jit(False), ours.run(None, feed)),
        "compiled": lambda: (set_jit(True), ours.run(None, feed)),
    }
    times = {name: [] for name in contenders}
    for _ in range(3):  # warm-up (and the first call's compilation)
        for fn in contenders.values():
            fn()
    for _ in range(runs):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    set_jit(True)
    return times


def cells(times: dict[str, list[float]]) -> str:
    return " | ".join(f"{min(v) * 1e3:.3f} / {statistics.median(v) * 1e3:.3f}" for v in times.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--models", type=int, default=0, help="runs of each whole light model (0: none)")
    args = ap.parse_args()
    print(f"load before: {load_average()}")
    print("| model | op | input | onnxruntime min / median (ms) | NumPy body | compiled |")
    print("|---|---|---|---|---|---|")
    for case in CASES:
        t = measure(*node_case(case), args.runs)
        print(f"| {case[0]} | {case[1]} | {'x'.join(map(str, case[2]))} | {cells(t)} |", flush=True)
    if args.models:
        import onnx.backend.test as suite  # noqa: PLC0415
        from ortgpu.sample_inputs import make_inputs  # noqa: PLC0415
        light = os.path.join(os.path.dirname(suite.__file__), "data", "light")
        print("\n| whole model | onnxruntime min / median (ms) | NumPy pools | compiled pools |\n|---|---|---|---|")
        for name in ("inception_v1", "resnet50", "squeezenet", "shufflenet", "densenet121"):
            path = os.path.join(light, f"light_{name}.onnx")
            feed = make_inputs(ortgpu.InferenceSession(path, providers=["CPUExecutionProvider"]))
            with open(path, "rb") as f:
                t = measure(f.read(), feed, args.models)
            print(f"| light_{name} | {cells(t)} |", flush=True)
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
