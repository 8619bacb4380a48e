"""The int8 GEMM raw kernel (providers/cuda/kernels/quant_gemm_int8.cu) for QLinearMatMul and
MatMulInteger on the CUDA provider, run on the host emulator (tests/support/cuda_emulator):
equal to the shared NumPy kernel exactly and to onnxruntime's CPU result (MatMulInteger
exactly, QLinearMatMul within one quantization step: onnxruntime requantizes in its own fixed
order), for the type combinations, per-tensor and per-column B parameters, shapes that do not
fill the 16 x 16 tiles, and accumulations past float32's exact range (the float64 epilogue).
Inputs the kernel does not take go to the shared kernel without a launch.  Nothing here was run
on a GPU."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from support.cuda_emulator import emulated_cuda  # noqa: F401  (the fixture)
from ortgpu.providers import registry
from ortgpu.providers.cuda.kernels import quant_gemm_int8 as qg
from ortgpu.providers.registry import KernelContext

ONNX_TYPE = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
             np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}


def _ctx(xp, op):
    return KernelContext(xp, "cuda" if xp is not np else "cpu", op_type=op, opset=21, num_outputs=1,
                         output_present=(True,))


def _ints(rng, shape, dtype):
    info = np.iinfo(dtype)
    return np.asarray(rng.integers(info.min, info.max + 1, size=shape), dtype)


def _onnxruntime(op, inputs: dict, out_dtype, opset):
    ort = pytest.importorskip("onnxruntime")
    names = list(inputs)
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"])], "g",
        [helper.make_tensor_value_info(k, ONNX_TYPE[np.dtype(v.dtype)], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", ONNX_TYPE[np.dtype(out_dtype)], None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)[0]


def _run(emu, op, inputs, host):
    """(raw kernel's result on the emulator, shared kernel's result, kernels launched)."""
    k = registry.lookup(op, "", 21, ("cuda",))
    assert k.fn.__module__ == qg.__name__
    cp = emu.cupy
    dev = [x if x is None or i in k.host_inputs else cp.asarray(x) for i, x in enumerate(inputs)]
    assert k.host_inputs == () and k.capturable
    first = len(emu.launches)
    got = k.fn(_ctx(cp, op), *dev)
    got = got.get() if hasattr(got, "get") else np.asarray(got)
    want = registry.lookup(op, "", 21, (registry.SHARED,)).fn(_ctx(np, op), *inputs)
    return got, want, emu.launches[first:]


TYPES = [(np.uint8, np.int8, np.uint8), (np.int8, np.int8, np.int8), (np.uint8, np.uint8, np.uint8),
         (np.int8, np.uint8, np.int8)]
# (A shape, N): K is A's last dim; 300 x 255 x 255 passes 2**24 (float64 epilogue)
SHAPES = [((5, 7), 3), ((33, 40), 17), ((2, 3, 20), 18), ((4, 300), 5)]


@pytest.mark.parametrize("types", TYPES, ids=lambda t: "-".join(np.dtype(x).name for x in t))
@pytest.mark.parametrize("a_shape,n", SHAPES, ids=str)
@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul(types, a_shape, n, per_column, emulated_cuda):
    ta, tb, ty = (np.dtype(t) for t in types)
    rng = np.random.default_rng(a_shape[-1] * 7 + n)
    k = a_shape[-1]
    a, b = _ints(rng, a_shape, ta), _ints(rng, (k, n), tb)
    a_scale, a_zp = np.array(0.02, np.float32), _ints(rng, (), ta)
    cols = (n,) if per_column else ()
    b_scale = np.asarray(rng.random(cols) * 0.01 + 0.005, np.float32)
    b_zp = _ints(rng, cols, tb)
    # y_scale near the product's spread, so the outputs use the range and some saturate
    y_scale = np.array(0.02 * 0.01 * np.sqrt(k) * 60, np.float32)
    y_zp = _ints(rng, (), ty)
    inputs = [a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp]
    got, want, launches = _run(emulated_cuda, "QLinearMatMul", inputs, True)
    assert [entry.name for entry in launches] == [f"qgemm_int8<{qg.cu.CTYPE[ta]}, {qg.cu.CTYPE[tb]}, {qg.cu.CTYPE[ty]}>"]
    assert tuple(launches[0].block) == (16, 16, 1) or tuple(launches[0].block)[:2] == (16, 16)
    assert got.dtype == ty and got.shape == a_shape[:-1] + (n,)
    np.testing.assert_array_equal(got, want)
    assert 0 < np.count_nonzero(got != y_zp)
    if ta == np.uint8 or (ta == tb == np.int8):   # the combinations onnxruntime's CPU kernel takes
        theirs = _onnxruntime("QLinearMatMul", dict(zip(("a", "a_s", "a_z", "b", "b_s", "b_z", "y_s", "y_z"), inputs)),
                              ty, 21)
        assert np.abs(got.astype(np.int32) - theirs.astype(np.int32)).max() <= 1


@pytest.mark.parametrize("ta,tb", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)], ids=str)
@pytest.mark.parametrize("a_shape,n", SHAPES, ids=str)
def test_matmul_integer(ta, tb, a_shape, n, emulated_cuda):
    rng = np.random.default_rng(a_shape[0] + n)
    k = a_shape[-1]
    a, b = _ints(rng, a_shape, ta), _ints(rng, (k, n), tb)
    a_zp, b_zp = _ints(rng, (), ta), _ints(rng, (n,), tb)
    got, want, launches = _run(emulated_cuda, "MatMulInteger", [a, b, a_zp, b_zp], True)
    assert len(launches) == 1 and launches[0].name.startswith("qgemm_int8<")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    theirs = _onnxruntime("MatMulInteger", {"a": a, "b": b, "a_z": a_zp, "b_z": b_zp}, np.int32, 10)
    np.testing.assert_array_equal(got, theirs)


def test_what_the_kernel_does_not_take_goes_to_the_shared_kernel(emulated_cuda):
    rng = np.random.default_rng(5)
    a, b = _ints(rng, (4, 6), np.uint8), _ints(rng, (6, 3), np.uint8)
    per_row = _ints(rng, (4,), np.uint8)   # MatMulInteger's per-row A zero point
    got, want, launches = _run(emulated_cuda, "MatMulInteger", [a, b, per_row, None], True)
    assert launches == []
    np.testing.assert_array_equal(got, want)
    batched_b = _ints(rng, (2, 6, 3), np.uint8)
    got, want, launches = _run(emulated_cuda, "MatMulInteger", [_ints(rng, (2, 4, 6), np.uint8), batched_b,
                                                                None, None], True)
    assert launches == []
    np.testing.assert_array_equal(got, want)


def test_int32_accumulation_bound():
    """K * 255 * 255 < 2**31 is taken (K <= 33025 whatever the zero points), past it not; the
    float32 epilogue up to K = 258 (K * 255 * 255 <= 2**24), float64 past it."""
    a_zp = np.array(255, np.uint8)
    small = qg.plan(np.zeros((1, 33025), np.uint8), np.zeros((33025, 1), np.uint8), a_zp, np.array(0, np.uint8),
                    np.int32)
    assert small is not None and small["wide"] == 1
    assert qg.plan(np.zeros((1, 33026), np.uint8), np.zeros((33026, 1), np.uint8), a_zp, np.array(0, np.uint8),
                   np.int32) is None
    narrow = qg.plan(np.zeros((3, 258), np.uint8), np.zeros((258, 2), np.uint8), a_zp, np.array(0, np.uint8), np.uint8)
    assert narrow["wide"] == 0   # 258 * 65025 <= 2**24: the float32 epilogue, as the host kernel
    assert qg.plan(np.zeros((3, 259), np.uint8), np.zeros((259, 2), np.int8), None, None, np.uint8)["wide"] == 1


def test_qlinear_matmul_float64_epilogue(emulated_cuda):
    """K * 255 * 255 past 2**24: the int32 sum is not exact in float32, so both kernels requantize
    in float64; multipliers chosen so that products land near .5 and the rounding matters."""
    rng = np.random.default_rng(11)
    a = np.asarray(rng.choice([0, 255], size=(6, 300)), np.uint8)
    b = np.asarray(rng.choice([0, 255], size=(300, 9)), np.uint8)
    a_zp, b_zp = np.array(255, np.uint8), np.array(0, np.uint8)
    assert qg.plan(a, b, a_zp, b_zp, np.uint8)["wide"] == 1
    inputs = [a, np.array(1.0, np.float32), a_zp, b, np.array(1.0, np.float32), b_zp,
              np.array(65025 * 300 / 200.0, np.float32), np.array(128, np.uint8)]
    got, want, launches = _run(emulated_cuda, "QLinearMatMul", inputs, True)
    assert len(launches) == 1
    np.testing.assert_array_equal(got, want)
    theirs = _onnxruntime("QLinearMatMul", dict(zip(("a", "a_s", "a_z", "b", "b_s", "b_z", "y_s", "y_z"), inputs)),
                          np.uint8, 21)
    assert np.abs(got.astype(np.int32) - theirs.astype(np.int32)).max() <= 1


# ---------------------------------------------------------------- QLinearConv: im2col + the GEMM

# (x shape, w shape, attributes)
CONV_CASES = [((1, 3, 6, 5), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
              ((2, 4, 7, 6), (6, 2, 3, 2), {"group": 2, "strides": [2, 1], "pads": [1, 0, 1, 1]}),
              ((1, 4, 5, 5), (4, 1, 3, 3), {"group": 4, "dilations": [2, 1], "pads": [2, 1, 2, 1]}),
              ((1, 3, 5, 6), (2, 3, 2, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
              ((1, 16, 4, 4), (5, 16, 1, 1), {})]


@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_CASES, ids=str)
@pytest.mark.parametrize("types", [(np.uint8, np.int8, np.uint8), (np.int8, np.int8, np.int8)],
                         ids=lambda t: "-".join(np.dtype(x).name for x in t))
@pytest.mark.parametrize("per_channel,bias", [(True, True), (False, False)])
def test_qlinear_conv(x_shape, w_shape, attrs, types, per_channel, bias, emulated_cuda):
    tx, tw, ty = (np.dtype(t) for t in types)
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    co = w_shape[0]
    x, w = _ints(rng, x_shape, tx), _ints(rng, w_shape, tw)
    chans = (co,) if per_channel else ()
    w_scale = np.asarray(rng.random(chans) * 0.01 + 0.005, np.float32)
    w_zp = np.zeros(chans, tw)   # onnxruntime takes symmetric int8 weights only
    k = int(np.prod(w_shape[1:]))
    inputs = [x, np.array(0.03, np.float32), _ints(rng, (), tx), w, w_scale, w_zp,
              np.array(0.03 * 0.01 * np.sqrt(k) * 60, np.float32), _ints(rng, (), ty)]
    if bias:
        inputs.append(np.asarray(rng.integers(-3000, 3000, co), np.int32))
    k_cuda = registry.lookup("QLinearConv", "", 10, ("cuda",))
    assert k_cuda.fn.__module__ == qg.__name__ and k_cuda.host_inputs == ()
    cp = emulated_cuda.cupy
    first = len(emulated_cuda.launches)
    got = k_cuda.fn(_ctx(cp, "QLinearConv"), *[cp.asarray(v) for v in inputs], **attrs).get()
    names = emulated_cuda.names()[first:]
    group = attrs.get("group", 1)
    assert names.count(f"qconv_im2col<{qg.cu.CTYPE[tx]}>") == group and len(names) == 2 * group
    want = registry.lookup("QLinearConv", "", 10, (registry.SHARED,)).fn(_ctx(np, "QLinearConv"), *inputs, **attrs)
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1 and np.count_nonzero(diff) <= max(1, diff.size // 100)   # a rare tie (docstring)
    assert np.count_nonzero(got != inputs[7]) > 0
    names_in = ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z"] + (["b"] if bias else [])
    ort = pytest.importorskip("onnxruntime")
    graph = helper.make_graph(
        [helper.make_node("QLinearConv", names_in, ["y"], **attrs)], "g",
        [helper.make_tensor_value_info(nm, ONNX_TYPE[np.dtype(v.dtype)], v.shape) for nm, v in zip(names_in, inputs)],
        [helper.make_tensor_value_info("y", ONNX_TYPE[ty], None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, dict(zip(names_in, inputs)))[0]
    assert np.abs(got.astype(np.int32) - theirs.astype(np.int32)).max() <= 1


def test_qlinear_conv_of_other_ranks_goes_to_the_shared_kernel(emulated_cuda):
    rng = np.random.default_rng(3)
    inputs = [_ints(rng, (1, 2, 9), np.uint8), np.array(0.1, np.float32), np.array(3, np.uint8),
              _ints(rng, (3, 2, 3), np.int8), np.array(0.05, np.float32), np.array(0, np.int8),
              np.array(0.5, np.float32), np.array(128, np.uint8)]
    cp = emulated_cuda.cupy
    got = registry.lookup("QLinearConv", "", 10, ("cuda",)).fn(_ctx(cp, "QLinearConv"),
                                                                 *[cp.asarray(v) for v in inputs]).get()
    assert emulated_cuda.names() == []
    want = registry.lookup("QLinearConv", "", 10, (registry.SHARED,)).fn(_ctx(np, "QLinearConv"), *inputs)
    np.testing.assert_array_equal(got, want)
