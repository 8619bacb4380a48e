"""The ONNX backend test suite of the installed onnx, on ortgpu's CPU provider.

Every case not listed in conformance/exclusions.py must pass; `test_pass_floor` checks
that the cases expected to pass never drop below the recorded floor (which only rises).
"""
import os
import re
import tempfile

import onnx.backend.test

from ortgpu.backend import OrtGpuBackend
from conformance.exclusions import SKIP, XFAIL, patterns

# Raise this whenever more cases pass; never lower it.
PASS_FLOOR = 2019

os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "ortgpu_onnx_home"))

_runner = onnx.backend.test.BackendTest(OrtGpuBackend, __name__)
_runner.exclude(r"_cuda$")  # the CUDA twins run in the GPU tier (tests/gpu), against this tier's results
for _p in patterns(SKIP):
    _runner.exclude(_p)
for _p in patterns(XFAIL):
    _runner.xfail(_p)
globals().update(_runner.test_cases)


def _cpu_case_names() -> list[str]:
    return sorted(name for items in _runner._test_items.values() for name in items if name.endswith("_cpu"))


def test_pass_floor():
    names = _cpu_case_names()
    excluded = [re.compile(p) for p in patterns(SKIP) + patterns(XFAIL)]
    expected_to_pass = [n for n in names if not any(p.search(n) for p in excluded)]
    print(f"{len(expected_to_pass)} of {len(names)} CPU cases are expected to pass")
    assert len(names) >= 2033
    assert len(expected_to_pass) >= PASS_FLOOR
