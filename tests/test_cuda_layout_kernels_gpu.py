"""The cases of ``test_cuda_layout_kernels_emulated.py`` (Transpose, Concat, Split, Slice, Gather,
GatherND, ScatterND, Resize, pooling, reductions) on a real CUDA device (``pytest -m gpu``).

The emulated module's test functions are imported here and collected again; this module's
``emulated_cuda`` fixture replaces the emulator's with the real CuPy and a record of the
kernels the launchers look up (one lookup per launch), so every check, kernel names
included, runs unchanged on the GPU.  Skips cleanly without CuPy or a device.
"""
from __future__ import annotations

import dataclasses

import pytest

from support.cuda_checks import require_cuda_device

pytestmark = pytest.mark.gpu

cupy = require_cuda_device()

from ortgpu.providers.cuda.kernels import module as cu  # noqa: E402
from test_cuda_layout_kernels_emulated import *  # noqa: E402,F401,F403  (the cases, collected again here)


@dataclasses.dataclass
class _Launch:
    name: str


@dataclasses.dataclass
class RealCuda:
    """What the emulated cases use of their fixture, on the device: the ``cupy`` module
    and the kernels launched so far."""
    cupy: object
    launches: list

    def names(self) -> list[str]:
        cupy.cuda.get_current_stream().synchronize()
        return [entry.name for entry in self.launches]


@pytest.fixture
def emulated_cuda(monkeypatch):  # noqa: F811  (replaces the emulator's fixture for these cases)
    """The real device in place of the emulator."""
    state = RealCuda(cupy, [])
    real = cu.function

    def recording(unit, name):
        state.launches.append(_Launch(name))
        return real(unit, name)

    monkeypatch.setattr(cu, "function", recording)
    return state
