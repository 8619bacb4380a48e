"""Generated FusedElementwise kernels run by the host CUDA emulator (tests/support/cuda_emulator): the
CUDA provider's kernel takes its real CuPy path (RawModule of the generated source, launch)
on the emulator's arrays, and its results equal the shared kernel's on NumPy.  Every case
checks which kernel was launched, so a silent fallback fails."""
from __future__ import annotations

import numpy as np
import pytest

from support.cuda_emulator import emulated_cuda  # noqa: F401  (the fixture)
from support.fused_programs import PROGRAMS, sample_inputs
from ortgpu.providers.cuda.kernels import fused_elementwise as gen
from ortgpu.providers.kernels import fused_elementwise as fe
from ortgpu.providers.registry import KernelContext

# shapes per input (x, y, mask), and how x is laid out on the device
CASES = {
    "flat": ([(5, 67), (5, 67), (5, 67)], "contiguous"),
    "scalar": ([(300,), (), (300,)], "contiguous"),
    "broadcast": ([(3, 1, 9), (4, 9), (3, 4, 1)], "contiguous"),
    "transposed": ([(9, 6), (1, 6), (9, 1)], "transposed"),
    "empty": ([(0, 5), (5,), (1, 5)], "contiguous"),
}
# Both sides round float16 after every op; the math functions differ (host libm vs NumPy/SciPy)
RTOL = {"float16": 4e-3, "float32": 1e-5, "float64": 1e-12}


def _device(cp, x, layout):
    if layout == "transposed":   # the values of x, stored transposed and seen through .T
        return cp.asarray(np.ascontiguousarray(x.T)).T
    return cp.asarray(x)


@pytest.fixture
def emu(emulated_cuda, monkeypatch):
    monkeypatch.setattr(gen, "_modules", {})
    return emulated_cuda


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_generated_kernel_equals_the_shared_kernel(emu, name, case):
    program = PROGRAMS[name]
    shapes, layout = CASES[case]
    host = sample_inputs(program, shapes[:len(program.inputs)], seed=5)
    cp = emu.cupy
    dev = [_device(cp, x, layout if k == 0 else "contiguous") for k, x in enumerate(host)]
    ctx = KernelContext(cp, "CUDAExecutionProvider", name, fe.OP_TYPE, 1)
    got = gen.FusedElementwise(ctx, *dev, program=program.text())
    want = fe.evaluate(KernelContext(np, "CPUExecutionProvider", name), program, host)
    assert isinstance(got, cp.ndarray)
    got = got.get()
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.size:
        flat = case in ("flat", "scalar") or (len(program.inputs) == 1 and case != "transposed")
        expected = gen.FLAT if flat else "fused_bcast<int>"
        assert emu.names() == [expected], emu.names()
    if want.dtype == bool:
        np.testing.assert_array_equal(got, want)
    else:
        tol = RTOL[program.dtype]
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


def test_special_values_propagate_as_in_the_shared_kernel(emu):
    """NaN, infinities and signed zeros through the mixed-type program (Max/Min with infinite
    constants, a multiplication by -0.0, float16 rounding and overflow)."""
    program = PROGRAMS["mixed_types"]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 65504.0, -65504.0, 1e-7, 3.0], np.float16)
    ctx = KernelContext(emu.cupy, "CUDAExecutionProvider", "special", fe.OP_TYPE, 1)
    got = gen.FusedElementwise(ctx, emu.cupy.asarray(x), program=program.text()).get()
    with np.errstate(all="ignore"):
        want = fe.evaluate(KernelContext(np, "CPUExecutionProvider", "special"), program, [x])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_prepare_compiles_the_module_before_any_run(emu):
    program = PROGRAMS["clip_attrs_f32"].text()
    ctx = KernelContext(emu.cupy, "CUDAExecutionProvider", "n", fe.OP_TYPE, 1)
    gen.FusedElementwise.prepare(ctx, program=program)
    assert (0, program) in gen._modules and emu.names() == []


def test_launches_reuse_the_looked_up_kernels(emu, monkeypatch):
    # issue 12 item 10: RawModule.get_function makes a new Function per call; only compile looks up
    from support.cuda_emulator.launch import RawModule
    lookups = []
    real = RawModule.get_function
    monkeypatch.setattr(RawModule, "get_function", lambda self, name: lookups.append(name) or real(self, name))
    program = PROGRAMS["clip_attrs_f32"]
    ctx = KernelContext(emu.cupy, "CUDAExecutionProvider", "n", fe.OP_TYPE, 1)
    host = sample_inputs(program, [(3, 4)] * len(program.inputs), seed=2)
    for _ in range(3):
        gen.FusedElementwise(ctx, *[emu.cupy.asarray(x) for x in host], program=program.text())
    assert len(lookups) == len(gen.kernel_names()) and len(emu.names()) == 3
