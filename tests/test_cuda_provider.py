"""CUDAExecutionProvider: options as onnxruntime parses them, availability, which nodes it
takes, the cuBLAS operand planning (checked against NumPy on the CPU) and, with a GPU
(`-m gpu`), TF32, float16 accumulation, batched MatMul, Gemm, cuDNN Conv, streams, copies."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper

import ortgpu
from support import model_builders as mb
from ortgpu.graph import Node
from ortgpu.providers.registry import KernelContext
from ortgpu.providers.cuda import CUDAExecutionProvider, ProviderOptionError, cuda_available
from ortgpu.providers.cuda import blas, cudnn as cuda_cudnn, provider as cuda_provider
from ortgpu.providers.cuda.options import OPTION_NAMES, parse_cuda_options
from ortgpu.providers.registry import KernelDef, _REGISTRY

DEFAULTS = {
    "device_id": "0", "has_user_compute_stream": "0", "user_compute_stream": "0",
    "gpu_mem_limit": "18446744073709551615", "gpu_external_alloc": "0", "gpu_external_free": "0",
    "gpu_external_empty_cache": "0", "arena_extend_strategy": "kNextPowerOfTwo",
    "cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": "1",
    "cudnn_conv_use_max_workspace": "1", "enable_cuda_graph": "0", "cudnn_conv1d_pad_to_nc1d": "0",
    "tunable_op_enable": "0", "tunable_op_tuning_enable": "0", "tunable_op_max_tuning_duration_ms": "0",
    "enable_skip_layer_norm_strict_mode": "0", "prefer_nhwc": "0", "use_ep_level_unified_stream": "0",
    "use_tf32": "1", "sdpa_kernel": "0", "fuse_conv_bias": "0",
}
BOOL_KEYS = [k for k in OPTION_NAMES if DEFAULTS[k] in ("0", "1") and k not in (
    "device_id", "user_compute_stream", "gpu_external_alloc", "gpu_external_free",
    "gpu_external_empty_cache", "tunable_op_max_tuning_duration_ms", "sdpa_kernel")]
UNSIGNED_KEYS = ["user_compute_stream", "gpu_mem_limit", "gpu_external_alloc", "gpu_external_free",
                 "gpu_external_empty_cache"]


def make(options=None, device_count=None):
    return CUDAExecutionProvider(options, device_count=device_count)


# ----------------------------------------------------------------------------- options

def test_every_option_is_reported_as_a_string_with_onnxruntime_defaults():
    p = make()
    assert p.get_options() == DEFAULTS
    assert list(p.get_options()) == list(OPTION_NAMES)
    assert CUDAExecutionProvider.option_defaults == DEFAULTS


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("text,expected", [("1", "1"), ("0", "0"), ("true", "1"), ("false", "0"),
                                           ("True", "1"), ("False", "0"), (True, "1"), (False, "0"),
                                           (1, "1"), (0, "0")])
def test_boolean_options_accept_onnxruntime_spellings(key, text, expected):
    got = make({key: text}).get_options()[key]
    # has_user_compute_stream is recomputed from user_compute_stream (0 here)
    assert got == (expected if key != "has_user_compute_stream" else "0")


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("text", ["yes", "TRUE", " 1", "1 ", "2", "", "-1", "on"])
def test_boolean_options_refuse_other_text(key, text):
    with pytest.raises(ProviderOptionError) as e:
        make({key: text})
    assert e.value.message == f'Failed to parse provider option "{key}": Failed to parse value: "{text}"'


@pytest.mark.parametrize("key", UNSIGNED_KEYS)
def test_unsigned_options_take_decimal_and_hex(key):
    assert make({key: "1024"}).get_options()[key] == "1024"
    assert make({key: "0x400"}).get_options()[key] == "1024"
    assert make({key: "0XfF"}).get_options()[key] == "255"
    assert make({key: str(2 ** 64 - 1)}).get_options()[key] == str(2 ** 64 - 1)
    for bad in ("-1", "+1", "1e9", "1.5", "0x", " 1", str(2 ** 64), "abc"):
        with pytest.raises(ProviderOptionError, match=f'Failed to parse provider option "{key}"'):
            make({key: bad})


@pytest.mark.parametrize("key,bits", [("tunable_op_max_tuning_duration_ms", 32), ("sdpa_kernel", 32)])
def test_signed_integer_options(key, bits):
    assert make({key: "250"}).get_options()[key] == "250"
    assert make({key: "-3"}).get_options()[key] == "-3"
    for bad in ("+1", "0x10", "1.0", " 5", str(2 ** (bits - 1)), "ten"):
        with pytest.raises(ProviderOptionError, match=f'Failed to parse provider option "{key}"'):
            make({key: bad})


def test_device_id_is_checked_against_the_device_count():
    assert make({"device_id": "1"}, device_count=2).device_id == 1
    for bad, count in (("2", 2), ("-1", 2), ("0", 0)):
        with pytest.raises(ProviderOptionError) as e:
            make({"device_id": bad}, device_count=count)
        assert e.value.message == (f'Failed to parse provider option "device_id": Invalid device ID: {bad}, '
                                   f"must be between 0 (inclusive) and {count} (exclusive).")
    for bad in ("40000", "1.0", "0x1", "gpu0"):  # device_id is an int16
        with pytest.raises(ProviderOptionError, match="Failed to parse value"):
            make({"device_id": bad})


@pytest.mark.parametrize("key,good,bad", [
    ("arena_extend_strategy", ["kNextPowerOfTwo", "kSameAsRequested"], ["0", "1", "knextpoweroftwo", ""]),
    ("cudnn_conv_algo_search", ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"], ["0", "heuristic", "FAST"]),
])
def test_enum_options_take_names_only(key, good, bad):
    for g in good:
        assert make({key: g}).get_options()[key] == g
    for b in bad:
        with pytest.raises(ProviderOptionError) as e:
            make({key: b})
        assert e.value.message == f'Failed to parse provider option "{key}": Failed to map enum name to value: {b}'


def test_unknown_option_is_an_onnxruntime_style_runtime_error():
    with pytest.raises(ProviderOptionError) as e:
        make({"use_tf32": "1", "cuda_mem_limit": "5"})
    assert e.value.message == 'Unknown provider option: "cuda_mem_limit".'
    assert str(e.value) == '[ONNXRuntimeError] : 1 : FAIL : Unknown provider option: "cuda_mem_limit".'
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, ortgpu.Fail)


def test_user_compute_stream_sets_the_flag_as_onnxruntime_does():
    opts = make({"user_compute_stream": "140000000"}).get_options()
    assert opts["user_compute_stream"] == "140000000" and opts["has_user_compute_stream"] == "1"
    # the flag alone, without a stream, reads back as 0
    assert make({"has_user_compute_stream": "1"}).get_options()["has_user_compute_stream"] == "0"


def test_parsed_values_are_typed():
    c = parse_cuda_options({"gpu_mem_limit": "0x100000", "use_tf32": "false", "prefer_nhwc": "1",
                            "cudnn_conv_algo_search": "HEURISTIC", "sdpa_kernel": "16"})
    assert (c.gpu_mem_limit, c.use_tf32, c.prefer_nhwc, c.cudnn_conv_algo_search, c.sdpa_kernel) == \
        (1 << 20, False, True, "HEURISTIC", 16)


def test_kernels_read_the_options_of_the_provider_in_their_context():
    from ortgpu.providers.cuda import blas  # noqa: PLC0415
    off, on = make({"use_tf32": "0"}), make({"use_tf32": "1"})
    assert blas.use_tf32(KernelContext(np, off.name, ep=off)) is False
    assert blas.use_tf32(KernelContext(np, on.name, ep=on)) is True
    assert blas.use_tf32(KernelContext(np, off.name, ep=off)) is False  # not "the last created one"
    assert blas.use_tf32(KernelContext(np, "cuda")) is True  # no provider: onnxruntime's default


# ----------------------------------------------------------------------------- availability

def test_not_available_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    cuda_available.cache_clear()
    try:
        assert cuda_available() is False
        assert cuda_provider.cuda_device_count() is None
        assert "CUDAExecutionProvider" not in ortgpu.get_available_providers()
        assert ortgpu.get_device() == "CPU"
    finally:
        cuda_available.cache_clear()


def test_package_imports_without_cupy():
    code = ("import sys; sys.modules['cupy'] = None\n"
            "import ortgpu.providers.cuda as c\n"
            "assert c.cuda_available() is False\n"
            "print(c.CUDAExecutionProvider.name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "CUDAExecutionProvider"


def test_asking_for_cuda_with_options_warns_and_runs_on_the_cpu():
    if cuda_available():
        pytest.skip("CUDA is available here")
    model = mb.identity().SerializeToString()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = ortgpu.InferenceSession(model, providers=[("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0}),
                                                      "CPUExecutionProvider"])
    assert s.get_providers() == ["CPUExecutionProvider"]
    assert any("Specified provider 'CUDAExecutionProvider' is not in available provider names."
               in str(m.message) for m in w)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], x)


# ----------------------------------------------------------------------------- capability

def _tensor(elem):
    return helper.make_tensor_type_proto(elem, None)


def _node(op, attrs=None, domain=""):
    return Node("n", op, domain, 21, ["a"], ["y"], dict(attrs or {}))


def _accepts(op, in_types, attrs=None, out_types=None, domain="", opset=21):
    p = make()
    k = p.kernel_for(op, domain, opset)
    assert k is not None, op
    return p.accepts(_node(op, attrs, domain), k, in_types, out_types)


def test_accepts_the_types_cupy_holds():
    for elem in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64,
                 TensorProto.UINT8, TensorProto.BOOL):
        assert _accepts("Relu" if elem in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
                        else "Identity", [_tensor(elem)])
    assert _accepts("Identity", [None])  # unknown type: let the kernel decide
    assert _accepts("SequenceLength", [helper.make_sequence_type_proto(_tensor(TensorProto.FLOAT))])


@pytest.mark.parametrize("elem", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2,
                                  TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1,
                                  TensorProto.STRING])
def test_declines_types_cupy_cannot_hold(elem):
    assert not _accepts("Identity", [_tensor(elem)])
    assert not _accepts("Identity", [_tensor(TensorProto.FLOAT)], out_types=[_tensor(elem)])
    assert not _accepts("Identity", [helper.make_optional_type_proto(_tensor(elem))])
    assert not _accepts("Identity", [helper.make_sequence_type_proto(_tensor(elem))])


def test_bfloat16_only_through_kernels_that_declare_it():
    """CuPy 14 holds bfloat16: a CUDA registration that declares it takes it, and so do the
    shared view/copy kernels of BF16_SHARED_OPS; another shared kernel does not."""
    bf = [_tensor(TensorProto.BFLOAT16)]
    assert _accepts("Relu", bf) and _accepts("Identity", bf) and _accepts("MatMul", bf + bf)
    assert _accepts("Identity", [helper.make_sequence_type_proto(bf[0])])
    assert not _accepts("ArgMax", bf)
    assert not _accepts("MaxPool", bf)            # its CUDA registration declares no bfloat16


def test_declines_attributes_that_produce_such_types():
    f = [_tensor(TensorProto.FLOAT)]
    assert _accepts("Cast", f, {"to": TensorProto.FLOAT16})
    assert _accepts("Cast", f, {"to": TensorProto.BFLOAT16})     # the CUDA Cast declares bfloat16
    assert not _accepts("Cast", f, {"to": TensorProto.STRING})
    assert not _accepts("RandomNormal", [], {"dtype": TensorProto.BFLOAT16})
    i64 = [_tensor(TensorProto.INT64)]
    assert _accepts("ConstantOfShape", i64, {"value": np.array([1.5], np.float32)})
    assert not _accepts("ConstantOfShape", i64, {"value": np.array(["a"], dtype=object)})


def test_declines_maps_and_host_only_shared_kernels():
    assert not _accepts("Identity", [helper.make_map_type_proto(TensorProto.INT64, _tensor(TensorProto.FLOAT))])
    assert not _accepts("Binarizer", [_tensor(TensorProto.FLOAT)], domain="ai.onnx.ml", opset=1)
    assert not _accepts("MaxRoiPool", [_tensor(TensorProto.FLOAT)])
    assert cuda_provider.host_only_reason(make().kernel_for("MaxRoiPool", "", 22))
    assert make().kernel_for("RoiAlign", "", 22).provider == "cuda"   # raw kernel, not host only


def test_a_cuda_kernel_overrides_the_host_only_table():
    p = make()
    shared = p.kernel_for("MaxRoiPool", "", 22)
    assert not p.accepts(_node("MaxRoiPool"), shared, [_tensor(TensorProto.FLOAT)])
    cuda_kernel = KernelDef("MaxRoiPool", "", shared.since, "cuda", shared.fn, shared.types, "")
    assert p.accepts(_node("MaxRoiPool"), cuda_kernel, [_tensor(TensorProto.FLOAT)])


def test_cuda_overrides_are_found_first_and_only_by_the_cuda_provider():
    from ortgpu.providers.cpu import CPUExecutionProvider
    for op, opset in (("MatMul", 13), ("MatMul", 1), ("Gemm", 13), ("Gemm", 7)):
        assert make().kernel_for(op, "", opset).provider == "cuda"
        assert CPUExecutionProvider().kernel_for(op, "", opset).provider == "shared"


def test_cudnn_conv_is_registered_whether_or_not_the_frontend_is_installed():
    """The launcher falls back to the shared kernel when cuDNN cannot run it, so the
    registration (and the coverage table) does not depend on what is installed."""
    assert any(k[:2] == ("", "Conv") and k[3] == "cuda" for k in _REGISTRY)


# ----------------------------------------------------------------------------- cuBLAS planning (NumPy)

def _colmajor(buf, off, rows, cols, ld, op):
    """The (rows x cols) matrix op(M) that cuBLAS reads at buf[off:] with leading dimension ld."""
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    return buf[off + (r + c * ld if op == 0 else c + r * ld)]


def emulate_cublas(a3, b3, ta, tb, alpha=1.0, beta=0.0, out3=None):
    """cublasGemmStridedBatchedEx with the arguments blas.cublas_args derives, in NumPy."""
    g = blas.cublas_args(a3, b3, ta, tb)
    first, second = np.ascontiguousarray(b3).ravel(), np.ascontiguousarray(a3).ravel()
    c = (np.zeros(g["batch"] * g["M"] * g["N"], np.float64) if out3 is None
         else np.ascontiguousarray(out3, np.float64).ravel().copy())
    for i in range(g["batch"]):
        f = _colmajor(first, i * g["stride_first"], g["m"], g["k"], g["ld_first"], g["op_first"])
        s = _colmajor(second, i * g["stride_second"], g["k"], g["n"], g["ld_second"], g["op_second"])
        idx = i * g["stride_c"] + np.arange(g["m"])[:, None] + np.arange(g["n"])[None, :] * g["ldc"]
        c[idx] = alpha * (f.astype(np.float64) @ s.astype(np.float64)) + beta * c[idx]
    return c.reshape(g["batch"], g["M"], g["N"])


MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                 ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (1, 5, 4, 6)), ((1, 3, 4), (2, 4, 5)), ((2, 3, 4), (4,)),
                 ((4,), (2, 4, 5)), ((2, 2, 3, 4), (2, 4, 5)), ((0, 3, 4), (4, 5))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
@pytest.mark.parametrize("layout", ["c", "f", "t"])
def test_matmul_plan_reproduces_numpy(sa, sb, layout):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal(sa), rng.standard_normal(sb)
    if layout == "f":
        A, B = np.asfortranarray(A), np.asfortranarray(B)
    elif layout == "t" and A.ndim >= 2 and B.ndim >= 2:  # transposed views of stored arrays
        A = np.ascontiguousarray(np.swapaxes(A, -1, -2)).swapaxes(-1, -2)
        B = np.ascontiguousarray(np.swapaxes(B, -1, -2)).swapaxes(-1, -2)
    a3, b3, ta, tb, out_shape = blas.plan_matmul(np, A, B)
    expected = np.matmul(A, B)
    assert out_shape == expected.shape
    assert a3.flags.c_contiguous and b3.flags.c_contiguous and a3.ndim == b3.ndim == 3
    if expected.size == 0:
        return  # the kernel returns zeros without calling cuBLAS
    got = emulate_cublas(a3, b3, ta, tb)
    np.testing.assert_allclose(got.reshape(out_shape), expected, rtol=1e-12, atol=1e-12)


def test_matmul_plan_uses_flags_not_copies_for_transposed_matrices():
    A = np.ones((5, 3)).T  # F-contiguous (3, 5)
    a3, _, ta, _, _ = blas.plan_matmul(np, A, np.ones((5, 2)))
    assert ta and np.shares_memory(a3, A)
    a3, b3, ta, tb, _ = blas.plan_matmul(np, np.ones((2, 3, 4)), np.ones((4, 6)))
    assert a3.shape == (1, 6, 4) and b3.shape == (1, 4, 6)  # batch folded into one GEMM


@pytest.mark.parametrize("transA,transB", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (), (1,), (5,), (3, 1), (3, 5)])
def test_gemm_geometry_reproduces_numpy(transA, transB, c_shape):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 3) if transA else (3, 4))
    B = rng.standard_normal((5, 4) if transB else (4, 5))
    C = None if c_shape is None else rng.standard_normal(c_shape)
    alpha, beta = 0.5, -2.0
    a2, ta = blas._c_operand(np, np.asfortranarray(A), bool(transA))
    b2, tb = blas._c_operand(np, B, bool(transB))
    out = np.zeros((3, 5)) if C is None else np.broadcast_to(C, (3, 5)).copy()
    got = emulate_cublas(a2[None], b2[None], ta, tb, alpha, 0.0 if C is None else beta, out[None])[0]
    ref = alpha * (A.T if transA else A) @ (B.T if transB else B) + (0 if C is None else beta * C)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_mismatched_inner_dimensions_are_refused():
    with pytest.raises(ValueError, match="inner dimensions"):
        blas.plan_matmul(np, np.ones((3, 4)), np.ones((5, 6)))


# ----------------------------------------------------------------------------- cuDNN geometry

def test_conv_geometry_2d_with_pads_strides_dilations():
    g = cuda_cudnn.conv_geometry((1, 4, 9, 8), (6, 2, 3, 3), "NOTSET", [2, 1], None, [1, 0, 2, 1], [2, 1])
    assert g["pre"] == [1, 0] and g["post"] == [2, 1] and g["stride"] == [2, 1] and g["dilation"] == [2, 1]
    assert g["y"] == [1, 6, 4, 7] and g["x"] == [1, 4, 9, 8]


def test_conv_geometry_same_upper_and_1d_lifting():
    g = cuda_cudnn.conv_geometry((2, 3, 7, 7), (4, 3, 3, 3), "SAME_UPPER", None, None, None, [2, 2])
    assert g["y"] == [2, 4, 4, 4] and g["pre"] == [1, 1] and g["post"] == [1, 1]
    g = cuda_cudnn.conv_geometry((2, 3, 10), (4, 3, 3), "NOTSET", None, [3], [1, 1], None)
    assert g["x"] == [2, 3, 10, 1] and g["w"] == [4, 3, 3, 1] and g["pre"] == [1, 0] and g["y"] == [2, 4, 10]
    g = cuda_cudnn.conv_geometry((2, 3, 10), (4, 3, 3), "NOTSET", None, [3], [1, 1], None, pad_to_nc1d=True)
    assert g["x"] == [2, 3, 1, 10] and g["w"] == [4, 3, 1, 3] and g["pre"] == [0, 1] and g["y"] == [2, 4, 10]


def test_conv_geometry_leaves_what_cudnn_cannot_do_to_the_shared_kernel():
    assert cuda_cudnn.conv_geometry((1, 1, 5, 5), (1, 1, 3, 3), "NOTSET", None, None, [-1, 0, 0, 0], None) is None
    assert cuda_cudnn.conv_geometry((1, 1, 5, 5), (1, 1, 3, 3), "NOTSET", None, [2, 2], None, None) is None
    assert cuda_cudnn.conv_geometry((1, 1, 2, 2), (1, 1, 3, 3), "NOTSET", None, None, None, None) is None
    assert cuda_cudnn.conv_geometry((1, 1, 2, 2, 2, 2), (1, 1, 1, 1, 1, 1), "NOTSET", None, None, None,
                                    None) is None


# ----------------------------------------------------------------------------- GPU tier

gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA device")


def _gpu_provider(**opts):
    return CUDAExecutionProvider({k: str(v) for k, v in opts.items()})


def _ctx(p):
    from ortgpu.providers.registry import KernelContext
    return KernelContext(p.xp, p.name)


@gpu
@needs_gpu
def test_gpu_run_context_uses_the_session_stream_and_device():
    import cupy
    p = _gpu_provider()
    with p.run_context():
        assert cupy.cuda.get_current_stream() == p.stream
        assert cupy.cuda.Device().id == p.device_id
    with pytest.raises(ProviderOptionError, match="Invalid device ID"):
        _gpu_provider(device_id=cupy.cuda.runtime.getDeviceCount())


@gpu
@needs_gpu
def test_gpu_host_copies_round_trip():
    import cupy
    p = _gpu_provider()
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    d = p.from_host(x)
    assert isinstance(d, cupy.ndarray)
    np.testing.assert_array_equal(p.to_host(d), x)
    seq = p.from_host([x, x + 1])
    assert all(isinstance(v, cupy.ndarray) for v in seq)
    assert [v.tolist() for v in p.to_host(seq)] == [x.tolist(), (x + 1).tolist()]
    assert p.from_host(None) is None and p.to_host(None) is None


@gpu
@needs_gpu
def test_gpu_tf32_on_and_off():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 2048)).astype(np.float32)
    b = rng.standard_normal((2048, 512)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    errs = {}
    for tf32 in (0, 1):
        p = _gpu_provider(use_tf32=tf32)
        with p.run_context():
            y = blas.MatMul(_ctx(p), p.from_host(a), p.from_host(b))
            errs[tf32] = float(np.abs(p.to_host(y) - ref).max() / np.abs(ref).max())
    assert errs[0] < 1e-5, errs
    assert errs[1] < 5e-3, errs
    import cupy
    if int(cupy.cuda.Device().compute_capability) >= 80:
        assert errs[1] > 10 * errs[0], errs  # TF32 really ran (10-bit mantissa)


@gpu
@needs_gpu
def test_gpu_float16_gemm_accumulates_in_float32():
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (64, 8192)).astype(np.float16)
    b = rng.uniform(-1, 1, (8192, 64)).astype(np.float16)
    ref = a.astype(np.float32) @ b.astype(np.float32)
    p = _gpu_provider()
    with p.run_context():
        for A, B in ((a, b), (np.stack([a, a]), b), (np.stack([a, a]), np.stack([b, b]))):
            y = p.to_host(blas.MatMul(_ctx(p), p.from_host(A), p.from_host(B)))
            assert y.dtype == np.float16
            err = np.abs(y.astype(np.float32) - np.broadcast_to(ref, y.shape)).max() / np.abs(ref).max()
            assert err < 2e-3, err  # float16 accumulation over K=8192 would be far worse


@gpu
@needs_gpu
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_batched_matmul_with_broadcasting(sa, sb, dtype):
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    p = _gpu_provider(use_tf32=0)
    with p.run_context():
        y = p.to_host(blas.MatMul(_ctx(p), p.from_host(A), p.from_host(B)))
    np.testing.assert_allclose(y, np.matmul(A, B), rtol=1e-5, atol=1e-5)


@gpu
@needs_gpu
@pytest.mark.parametrize("transA,transB", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gpu_gemm(transA, transB):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 30) if transA else (30, 40)).astype(np.float32)
    B = rng.standard_normal((50, 40) if transB else (40, 50)).astype(np.float32)
    C = rng.standard_normal((50,)).astype(np.float32)
    p = _gpu_provider(use_tf32=0)
    with p.run_context():
        y = p.to_host(blas.Gemm(_ctx(p), p.from_host(A), p.from_host(B), p.from_host(C), alpha=0.5, beta=2.0,
                                transA=transA, transB=transB))
    ref = 0.5 * (A.T if transA else A) @ (B.T if transB else B) + 2.0 * C
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@gpu
@needs_gpu
@pytest.mark.skipif(not cuda_cudnn.frontend_installed(), reason="needs nvidia-cudnn-frontend")
@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 4, 16, 16), (8, 4, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((1, 6, 15, 17), (6, 2, 3, 3), dict(group=3, strides=[2, 2], dilations=[2, 1], pads=[2, 1, 0, 1])),
    ((2, 3, 20), (5, 3, 4), dict(pads=[1, 2])),
    ((1, 4, 6, 7, 8), (2, 4, 3, 3, 3), dict(auto_pad="SAME_UPPER")),
])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-4), (np.float16, 2e-2)])
def test_gpu_conv_via_cudnn_matches_numpy(xs, ws, kw, dtype, tol):
    from ortgpu.providers.kernels.conv import conv_float
    from ortgpu.providers.registry import KernelContext
    rng = np.random.default_rng(4)
    X = rng.standard_normal(xs).astype(dtype)
    W = rng.standard_normal(ws).astype(dtype)
    Bias = rng.standard_normal(ws[0]).astype(dtype)
    args = dict(auto_pad=kw.get("auto_pad", "NOTSET"), dilations=kw.get("dilations"), group=kw.get("group", 1),
                kernel_shape=None, pads=kw.get("pads"), strides=kw.get("strides"))
    ref = conv_float(KernelContext(np, "CPUExecutionProvider"), X.astype(np.float64), W.astype(np.float64),
                     Bias.astype(np.float64), **args)
    p = _gpu_provider(use_tf32=0)
    before = len(cuda_cudnn._PLANS)
    with p.run_context():
        y = p.to_host(cuda_cudnn.conv_cudnn(_ctx(p), p.from_host(X), p.from_host(W), p.from_host(Bias), **args))
    assert y.dtype == dtype and y.shape == ref.shape
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=tol, atol=tol * np.abs(ref).max())
    built = list(cuda_cudnn._PLANS.values())[before:]
    assert not built or all(v is not cuda_cudnn._UNSUPPORTED for v in built), "cuDNN refused; im2col ran"


def test_holds_and_declined_dtypes_for_the_partitioner():
    p = make()
    assert {"float8_e4m3fn", "int4", "uint4", "float4_e2m1fn", "object"} <= p.declined_dtypes
    assert not {"float16", "float32", "float64", "int64", "bool", "uint8", "bfloat16"} & p.declined_dtypes
    assert p.holds(_tensor(TensorProto.FLOAT16)) and p.holds(None)
    assert p.holds(helper.make_sequence_type_proto(_tensor(TensorProto.INT64)))
    assert p.holds(_tensor(TensorProto.BFLOAT16))      # CuPy 14 holds ml_dtypes.bfloat16
    assert not p.holds(helper.make_optional_type_proto(_tensor(TensorProto.STRING)))
    assert not p.holds(helper.make_map_type_proto(TensorProto.STRING, _tensor(TensorProto.FLOAT)))
