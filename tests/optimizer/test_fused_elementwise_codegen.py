"""FusedElementwise programs: the shared kernel equals onnxruntime on the program's ops, the
generated CUDA source compiles for sm_80 and sm_90 (NVRTC, no GPU needed), and the host side
of the CUDA launcher (literals, launch plans, fallback) is right."""
import math

import numpy as np
import pytest

from support.fused_programs import PROGRAMS, body_model, sample_inputs
from ortgpu.errors import InvalidArgument
from ortgpu.providers.cuda.kernels import compile_check
from ortgpu.providers.cuda.kernels import fused_elementwise as gen
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import fused_elementwise as fe
from ortgpu.providers.registry import KernelContext

ort = pytest.importorskip("onnxruntime")

SHAPES = [(4, 1, 5), (3, 5), (4, 3, 1)]
# float16 sums of ~50 terms round differently op by op in onnxruntime's float16 kernels
RTOL = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-7, "bool": 0}


def _oracle(program, feeds):
    """onnxruntime on the program's ops; onnx's reference evaluator where onnxruntime has no
    kernel (its CPU provider lacks some float64 activations)."""
    model = body_model(program)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model).run(None, feeds)[0]
    return sess.run(None, feeds)[0]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_shared_kernel_equals_onnxruntime_on_the_ops(name):
    program = PROGRAMS[name]
    inputs = sample_inputs(program, SHAPES[:len(program.inputs)])
    got = fe.evaluate(KernelContext(np, "CPUExecutionProvider", name), program, inputs)
    want = _oracle(program, {f"i{k}": v for k, v in enumerate(inputs)})
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == bool:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=RTOL[program.dtype], atol=RTOL[program.dtype])


def test_programs_cover_every_op():
    used = {op.op_type for p in PROGRAMS.values() for op in p.ops}
    assert used == set(fe.OPS)


NVRTC_MISSING = compile_check.nvrtc_available()
NVCC = compile_check.nvcc_path()


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_generated_source_compiles(name, arch):
    src = gen.cuda_source(PROGRAMS[name].text())
    if NVRTC_MISSING is None:
        cubin = compile_check.nvrtc_compile(src, f"fused_{name}", gen.kernel_names(), arch)
    elif NVCC is not None:
        unit_src = src + "\nconst void* const refs[] = {" + ", ".join(
            f"reinterpret_cast<const void*>(&{n})" for n in gen.kernel_names()) + "};\n"
        cubin = _nvcc(unit_src, arch)
    else:
        pytest.skip(f"no CUDA compiler (NVRTC: {NVRTC_MISSING}; no nvcc)")
    assert len(cubin) > 1000


def _nvcc(text, arch):
    import os
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "f.cu"), os.path.join(tmp, "f.cubin")
        with open(src, "w") as f:
            f.write(text)
        subprocess.run([NVCC, f"-arch={arch}", "-cubin", *cu.OPTIONS, "-o", out, src], check=True)
        with open(out, "rb") as f:
            return f.read()


def test_a_compile_error_names_the_program():
    if NVRTC_MISSING is not None:
        pytest.skip(f"NVRTC unusable: {NVRTC_MISSING}")
    with pytest.raises(compile_check.CompileError, match="fused_broken"):
        compile_check.nvrtc_compile("__global__ void fused_flat() { undefined_thing(); }", "fused_broken",
                                    ("fused_flat",), "sm_90")


# ---------------------------------------------------------------- host side of the launcher

@pytest.mark.parametrize("value", [0.1, -0.0, 1e-45, 3.4028234663852886e38, 0.5, -2.75, 1 / 3])
@pytest.mark.parametrize("ctype", ["float", "double"])
def test_literals_are_exact(value, ctype):
    text = gen.literal(value, ctype)
    parsed = float.fromhex(text.strip("()").rstrip("f"))
    want = float(np.float32(value)) if ctype == "float" else value
    assert parsed == want and math.copysign(1, parsed) == math.copysign(1, want)


def test_special_literals():
    assert "0x7f800000" in gen.literal(math.inf, "float") and "0xff800000" in gen.literal(-math.inf, "float")
    assert "0x7fc00000" in gen.literal(math.nan, "float")
    assert "0x7ff8000000000000" in gen.literal(math.nan, "double")
    assert gen.literal(1.0, "bool") == "true"


def _arrays(shapes, dtypes):
    return [np.zeros(s, dtype=t) for s, t in zip(shapes, dtypes)]


def test_launch_plan_flat_for_same_shapes_and_scalars():
    program = PROGRAMS["all_ops_f32"]
    xs = _arrays([(6, 7), (), (6, 7)], ["float32", "float32", "bool"])
    shape, plan = gen.launch_plan(program, xs)
    assert shape == (6, 7) and plan.steps == (1, 0, 1)
    name, args = gen.launch_args(program, xs, np.empty(shape, np.float32), plan)
    assert name == gen.FLAT and [int(a) for a in args[4:]] == [42, 1, 0, 1]


def test_launch_plan_broadcast_struct_has_one_stride_row_per_input():
    """Emulates broadcast_offsets on the struct: each output element reads, from each input's
    memory, the element NumPy broadcasting gives (a transposed view included)."""
    program = PROGRAMS["all_ops_f32"]
    memory = [np.arange(20, dtype=np.float32), np.arange(16, dtype=np.float32) + 100,
              np.arange(5) % 2 == 0]
    xs = [memory[0].reshape(4, 5).T, memory[1].reshape(4, 1, 4), memory[2].reshape(5, 1)]
    shape, plan = gen.launch_plan(program, xs)
    assert shape == (4, 5, 4) and plan.steps is None
    name, args = gen.launch_args(program, xs, np.empty(shape, np.float32), plan)
    info = args[-1]
    assert name == "fused_bcast<int>" and info.dtype == cu.broadcast_dtype(3)
    assert info.dtype.itemsize == 8 * (1 + cu.MAX_DIMS + 3 * cu.MAX_DIMS)
    nd = int(info["ndim"][0])
    dims = [int(d) for d in info["shape"][0, :nd]]
    for k, x in enumerate(xs):
        strides = [int(s) for s in info["stride"][0, k, :nd]]
        offsets = [sum(i * s for i, s in zip(np.unravel_index(j, dims), strides)) for j in range(math.prod(shape))]
        np.testing.assert_array_equal(memory[k][offsets], np.broadcast_to(x, shape).ravel())


def test_launch_plan_declines_other_types():
    program = PROGRAMS["all_ops_f32"]
    assert gen.launch_plan(program, _arrays([(3,), (3,), (3,)], ["float16", "float32", "bool"])) is None
    assert gen.launch_plan(program, _arrays([(3,), (3,)], ["float32", "float32"])) is None


def test_cuda_kernel_falls_back_to_the_shared_kernel_off_the_device():
    program = PROGRAMS["mixed_types"]
    (x,) = sample_inputs(program, [(3, 4)])
    ctx = KernelContext(np, "CUDAExecutionProvider", "n")
    got = gen.FusedElementwise(ctx, x, program=program.text())
    np.testing.assert_array_equal(got, fe.evaluate(ctx, program, [x]))
    with pytest.raises(InvalidArgument, match="input 0 has element type float32"):
        gen.FusedElementwise(ctx, x.astype(np.float32), program=program.text())
