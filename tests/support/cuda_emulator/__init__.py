"""A host (CPU) emulator for the raw CUDA kernels of ``providers/cuda/kernels``.

No GPU exists where the default tests run, yet the logic of the raw kernels (indexing,
broadcasting, reductions with shuffles and barriers, type conversions) and of their
launchers (launch configurations, argument packing) should be tested there.  This package
runs them on the CPU, unchanged:

* ``cuda_host.h`` lets the CUDA text (``module.source_text``: ``common.cuh`` + the .cu file)
  compile with g++: the CUDA keywords, ``threadIdx`` & co, ``__syncthreads``, warp
  shuffles and votes, atomics, intrinsics.  Each CUDA thread of a block is a fiber, blocks
  run one after another (see the header's comment for what is and is not modelled).
  ``common.cuh`` has one ``#ifdef ORTGPU_HOST_EMULATION`` branch: exact host float16
  conversions in place of its PTX.
* ``build.py`` appends an ``extern "C"`` entry per name expression and compiles with g++
  (UBSan checks in trap mode) into a cache folder, keyed by a hash of everything compiled.
* ``launch.py`` is CuPy's ``RawModule``/``Function`` for that library: it packs arguments
  by CuPy's rules and checks each against the kernel's parameter types.
* ``device_memory.py`` holds device arrays in guarded buffers (a read past the end fails the
  launch and names the argument); ``fake_cupy.py`` is the ``cupy`` module stand-in.

The ``emulated_cuda`` fixture installs it for one test (monkeypatching only:
``sys.modules['cupy']``, ``module._modules``/``_functions`` and ``module.sm_count``'s
cache), so the product code runs its real CuPy path: ``module.function`` builds a
``cupy.RawModule`` from the real source text, options and name expressions.

How to test a new kernel with it
--------------------------------
1. Declare the unit in the launcher as usual (``module.declare(source, key, names)``) and
   register the launcher with ``@kernel(..., provider="cuda")``.  Nothing else: any
   declared unit compiles for the emulator.
2. In a default-tier test::

       from support.cuda_emulator import emulated_cuda  # noqa: F401  (the fixture)

       def test_my_op(emulated_cuda):
           cp = emulated_cuda.cupy
           x = rng.standard_normal((3, 5)).astype(np.float32)
           ctx = KernelContext(cp, "cuda", op_type="MyOp", opset=13)
           got = registry.lookup("MyOp", "", 13, ("cuda",)).fn(ctx, cp.asarray(x))
           want = registry.lookup("MyOp", "", 13, (registry.SHARED,)).fn(
               KernelContext(np, "cpu", op_type="MyOp", opset=13), x)
           np.testing.assert_array_equal(got.get(), want)
           assert emulated_cuda.names(), "the raw kernel did not run"

   ``emulated_cuda.launches`` lists every launch (name, grid, block, shared memory), so a
   test can also check the launch configuration.  A kernel fault, a barrier not every
   thread reaches or an argument that does not match the kernel's parameter raises
   ``EmulatedLaunchError`` or ``TypeError`` from the launch.
3. Keep shapes small: a block of 1024 threads costs about a millisecond per barrier phase.
   The first run compiles each unit (a second or so); later runs load the cached library.

For a kernel text that is not a declared unit (a test kernel), call
``cuda_emulator.launch.RawModule(code=..., name_expressions=[...])`` directly.
"""
from __future__ import annotations

import dataclasses
import functools
import sys

import pytest

from support.cuda_emulator import build, device_memory, launch
from support.cuda_emulator.fake_cupy import make_cupy
from support.cuda_emulator.launch import EmulatedLaunchError, RawModule

__all__ = ["EmulatedCuda", "EmulatedLaunchError", "RawModule", "emulated_cuda", "install", "make_cupy",
           "device_memory", "SM_COUNT"]

SM_COUNT = 1   # one multiprocessor: launch_elementwise uses at most 8 blocks, grid-stride loops wrap


@dataclasses.dataclass
class EmulatedCuda:
    """What the fixture gives a test: the ``cupy`` stand-in and the launches seen so far."""
    cupy: object
    launches: list

    def names(self) -> list[str]:
        """Kernel names launched so far, in order."""
        return [entry.name for entry in self.launches]


def install(monkeypatch, sm_count: int = SM_COUNT) -> EmulatedCuda:
    """Route the CUDA provider's raw kernels to the emulator for the life of ``monkeypatch``."""
    if build.compiler() is None:
        pytest.skip("g++ is not installed: the CUDA emulator cannot compile kernels")
    from ortgpu.providers.cuda.kernels import module as cu

    cp = make_cupy(sm_count)
    state = EmulatedCuda(cp, [])
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(cu, "_modules", {})
    monkeypatch.setattr(cu, "_functions", {})
    monkeypatch.setattr(cu, "sm_count", functools.lru_cache(maxsize=None)(cu.sm_count.__wrapped__))
    monkeypatch.setattr(launch, "listeners", [state.launches.append])
    return state


@pytest.fixture
def emulated_cuda(monkeypatch) -> EmulatedCuda:
    """The CUDA emulator installed for one test (see the package docstring)."""
    return install(monkeypatch)
