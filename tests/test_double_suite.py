"""The ONNX backend node suite through sessions on [device double, CPU].

Every node a shared kernel accepts runs on the double's arrays (tests/support/device_double.py),
which refuse implicit conversion to NumPy: a kernel that is not array-module clean, or a
missing copy, fails here.  Cases not listed in DOUBLE_XFAIL (or in the CPU suite's own
exclusions) must pass; `test_double_pass_floor` keeps the count from dropping and prints
how many nodes ran on the double and how many on the CPU.
"""
import collections
import os
import re
import tempfile

import onnx.backend.test

from conformance.exclusions import SKIP, XFAIL, patterns
from support.device_double import FakeDeviceExecutionProvider
from support.device_double import providers as double_providers
from ortgpu.backend import OrtGpuBackend, OrtGpuRep
from ortgpu.options import GraphOptimizationLevel, SessionOptions
from ortgpu.session import InferenceSession

# Raise this whenever more cases pass on the double; never lower it.
DOUBLE_PASS_FLOOR = 2019
DOUBLE_NODE_FLOOR = 9642  # node-suite steps placed on the double, optimizations off (test_double_pass_floor)

# Cases that pass on the CPU but not through the double, by cause (anchored patterns).
DOUBLE_XFAIL: dict[str, list[tuple[str, str]]] = {}

os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "ortgpu_onnx_home"))


def double_session(model) -> InferenceSession:
    return InferenceSession(model, providers=double_providers())


class DoubleBackend(OrtGpuBackend):
    """The ortgpu backend with the device double first and the CPU second."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        return OrtGpuRep(double_session(model))


_runner = onnx.backend.test.BackendTest(DoubleBackend, __name__)
_runner.exclude(r"_cuda$")
for _p in patterns(SKIP):
    _runner.exclude(_p)
for _p in patterns(XFAIL) + patterns(DOUBLE_XFAIL):
    _runner.xfail(_p)
globals().update(_runner.test_cases)


def node_placement() -> collections.Counter:
    """Steps of every node-suite model (subgraphs included) by provider, and copy steps, with
    graph optimizations off: the count measures which kernels run on the double, not how
    much the optimizer folds away."""
    counts = collections.Counter()
    unoptimized = SessionOptions()
    unoptimized.graph_optimization_level = GraphOptimizationLevel.ORT_DISABLE_ALL
    for case in onnx.backend.test.loader.load_model_tests(kind="node"):
        try:
            sess = InferenceSession(case.model, unoptimized, providers=double_providers())
        except Exception:  # noqa: BLE001 - cases that the CPU also refuses are counted elsewhere
            counts["not loadable"] += 1
            continue
        for _, op, prov in sess.get_provider_assignment(include_subgraphs=True):
            counts["copy" if op.startswith("Memcpy") else prov] += 1
    return counts


def test_double_pass_floor():
    names = sorted(n for items in _runner._test_items.values() for n in items if n.endswith("_cpu"))
    excluded = [re.compile(p) for p in patterns(SKIP) + patterns(XFAIL) + patterns(DOUBLE_XFAIL)]
    expected = [n for n in names if not any(p.search(n) for p in excluded)]
    counts = node_placement()
    print(f"{len(expected)} of {len(names)} cases are expected to pass on [double, CPU]")
    print("node-suite steps: " + ", ".join(f"{k}: {v}" for k, v in counts.most_common()))
    assert len(expected) >= DOUBLE_PASS_FLOOR
    assert counts[FakeDeviceExecutionProvider.name] >= DOUBLE_NODE_FLOOR
