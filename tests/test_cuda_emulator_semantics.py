"""The host emulator itself (``tests/support/cuda_emulator``): float16 conversions of common.cuh's host
branch against NumPy, CUDA's barrier, shuffle, vote and atomic semantics on small test
kernels, the faults and misuses it must report instead of passing, CuPy's argument packing
rules, and its compile cache.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from support.cuda_emulator import build, device_memory, install
from support.cuda_emulator.launch import EmulatedLaunchError, RawModule
from ortgpu.providers.cuda.kernels import module as cu

pytestmark = pytest.mark.skipif(build.compiler() is None, reason="g++ is not installed")

COMMON = (cu.KERNEL_DIR / cu.COMMON_HEADER).read_text()

CONVERSIONS = COMMON + r"""
__global__ void h2f(const half_t* x, float* y, i64 n) {
    for (i64 i = grid_start(); i < n; i += grid_step()) y[i] = half_to_float(x[i]);
}
__global__ void f2h(const float* x, half_t* y, i64 n) {
    for (i64 i = grid_start(); i < n; i += grid_step()) y[i] = float_to_half(x[i]);
}
__global__ void d2h(const double* x, half_t* y, i64 n) {
    for (i64 i = grid_start(); i < n; i += grid_step()) y[i] = double_to_half(x[i]);
}
"""

SEMANTICS = r"""
// tree reduction of each block's values through shared memory; RACY leaves out the barrier
template <bool RACY>
__global__ void block_sum(const float* x, float* out) {
    __shared__ float buf[256];
    const unsigned t = threadIdx.x + threadIdx.y * blockDim.x;
    const unsigned n = blockDim.x * blockDim.y;
    buf[t] = x[blockIdx.x * n + t];
    __syncthreads();
    for (unsigned s = n / 2; s > 0; s >>= 1) {
        if (t < s) buf[t] += buf[t + s];
        if (!RACY) __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = buf[0];
}

// per thread: shfl, shfl_up, shfl_down, shfl_xor of v at width w, ballot of v > 0
__global__ void shuffles(const int* v, int* out, int src, int delta, int width) {
    const unsigned t = threadIdx.x;
    const int x = v[t];
    out[5 * t + 0] = __shfl_sync(0xffffffffu, x, src, width);
    out[5 * t + 1] = __shfl_up_sync(0xffffffffu, x, delta, width);
    out[5 * t + 2] = __shfl_down_sync(0xffffffffu, x, delta, width);
    out[5 * t + 3] = __shfl_xor_sync(0xffffffffu, x, delta, width);
    out[5 * t + 4] = static_cast<int>(__ballot_sync(0xffffffffu, x > 0));
}

__global__ void block_votes(const int* v, int* out) {
    const int p = v[threadIdx.x] > 0;
    const int c = __syncthreads_count(p);
    const int a = __syncthreads_and(p);
    const int o = __syncthreads_or(p);
    if (threadIdx.x == 0) { out[0] = c; out[1] = a; out[2] = o; }
}

__global__ void atomics(const int* v, int* sum, int* top, unsigned long long* count) {
    const int x = v[blockIdx.x * blockDim.x + threadIdx.x];
    atomicAdd(sum, x);
    atomicMax(top, x);
    atomicAdd(count, 1ull);
}

__global__ void reverse_block(const float* x, float* y) {   // dynamic shared memory
    extern __shared__ float tile[];
    tile[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    y[blockIdx.x * blockDim.x + threadIdx.x] = tile[blockDim.x - 1 - threadIdx.x];
}

__global__ void indices(unsigned* out) {   // each thread writes its coordinates
    const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned* o = out + 6 * (b * blockDim.x * blockDim.y * blockDim.z + t);
    o[0] = blockIdx.x; o[1] = blockIdx.y; o[2] = blockIdx.z;
    o[3] = threadIdx.x; o[4] = threadIdx.y; o[5] = threadIdx.z;
}
"""

MISUSE = r"""
typedef long long i64;
struct Pair { i64 a; double b; };
__global__ void divergent_barrier() { if (threadIdx.x < 16) __syncthreads(); }
__global__ void exit_then_barrier() { if (threadIdx.x == 3) return; __syncthreads(); }
__global__ void shuffle_after_exit(float* y) {
    if (threadIdx.x >= 16) return;
    y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
__global__ void shuffle_outside_mask(float* y) {
    y[threadIdx.x] = __shfl_sync(0x0000ffffu, 1.0f, 0);
}
__global__ void read_past_end(const float* x, float* y, i64 n, i64 extra) {
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) y[i] = x[i + extra];
}
__global__ void divide(const int* a, const int* b, int* y) { y[threadIdx.x] = a[threadIdx.x] / b[threadIdx.x]; }
__global__ void index_fixed_array(int* y) {
    int table[4] = {1, 2, 3, 4};
    y[threadIdx.x] = table[threadIdx.x];
}
__global__ void trap() { if (threadIdx.x == 5) __trap(); }
__global__ void takes(const float* x, i64 n, float v, Pair p, double* out) {
    out[0] = x[0] + static_cast<double>(n) + v + static_cast<double>(p.a) + p.b;
}
"""


@pytest.fixture(scope="module")
def conversions():
    return RawModule(code=CONVERSIONS, options=cu.OPTIONS, name_expressions=["h2f", "f2h", "d2h"])


@pytest.fixture(scope="module")
def semantics():
    return RawModule(code=SEMANTICS, options=cu.OPTIONS,
                     name_expressions=["block_sum<false>", "block_sum<true>", "shuffles", "block_votes",
                                       "atomics", "reverse_block", "indices"])


@pytest.fixture(scope="module")
def misuse():
    return RawModule(code=MISUSE, options=cu.OPTIONS,
                     name_expressions=["divergent_barrier", "exit_then_barrier", "shuffle_after_exit",
                                       "shuffle_outside_mask", "read_past_end", "divide", "index_fixed_array",
                                       "trap", "takes"])


def _convert(module, name, x, dst):
    dev = device_memory.to_device(x)
    out = device_memory.empty(x.shape, dst)
    module.get_function(name)((8,), (256,), (dev, out, np.int64(x.size)))
    return out.get()


def _same_bits_or_both_nan(got, want):
    gn, wn = np.isnan(got), np.isnan(want)
    np.testing.assert_array_equal(gn, wn)
    np.testing.assert_array_equal(got[~gn].view(np.uint16 if got.itemsize == 2 else np.uint32),
                                  want[~wn].view(np.uint16 if want.itemsize == 2 else np.uint32))


def test_half_to_float_is_exact_for_every_float16(conversions):
    h = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    got = _convert(conversions, "h2f", h, np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), h.astype(np.float32).view(np.uint32))


def _halfway_points(dtype):
    """Every float16 value, the midpoints between neighbours and their two neighbours in
    ``dtype`` (the round-to-nearest-even cases), plus overflow and underflow edges."""
    h = np.arange(0x7c00, dtype=np.uint16).view(np.float16).astype(dtype)
    nxt = np.arange(1, 0x7c01, dtype=np.uint16).view(np.float16).astype(dtype)
    mid = (h + nxt) / 2                       # exact in float32 and float64
    pts = np.concatenate([h, mid, np.nextafter(mid, dtype(0)), np.nextafter(mid, dtype(np.inf)),
                          np.array([65504, 65519.99, 65520, 1e6, 2.0 ** -25, 2.0 ** -26, 1e-30], dtype)])
    return np.concatenate([pts, -pts]).astype(dtype)


@pytest.mark.parametrize("dtype, name", ((np.float32, "f2h"), (np.float64, "d2h")))
def test_float_to_half_rounds_to_nearest_even_as_numpy(conversions, dtype, name):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 63, size=50_000, dtype=np.uint64)
    randoms = (bits.astype(np.uint32) if dtype == np.float32 else bits).view(dtype)
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    x = np.concatenate([_halfway_points(dtype), randoms, specials])
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    _same_bits_or_both_nan(_convert(conversions, name, x, np.float16), want)


def test_double_rounding_is_avoided_from_float64(conversions):
    x = np.array([1 + 2.0 ** -11 + 2.0 ** -40, 1 + 2.0 ** -11 - 2.0 ** -40], np.float64)
    assert (x.astype(np.float32).astype(np.float16) == 1.0).all()   # what two roundings give
    got = _convert(conversions, "d2h", x, np.float16)
    np.testing.assert_array_equal(got, x.astype(np.float16))
    assert got[0] != 1.0


# ---------------------------------------------------------------- CUDA semantics


def test_barriers_make_a_tree_reduction_right_and_their_absence_shows(semantics):
    x = np.random.default_rng(1).integers(-50, 50, size=(4, 128)).astype(np.float32)  # exact sums
    for racy, block in ((False, (32, 4)), (True, (32, 4)), (False, (128,))):
        out = device_memory.empty(4, np.float32)
        semantics.get_function(f"block_sum<{'true' if racy else 'false'}>")((4,), block,
                                                                              (device_memory.to_device(x), out))
        if racy:
            assert not np.array_equal(out.get(), x.sum(axis=1)), "a missing barrier went unnoticed"
        else:
            np.testing.assert_array_equal(out.get(), x.sum(axis=1))


def _expected_shuffles(v, src, delta, width):
    """CUDA's definitions, lane by lane, for a full warp."""
    out = np.zeros((32, 5), np.int64)
    for lane in range(32):
        base = lane & ~(width - 1)
        up = lane - delta
        down = lane + delta
        xor = lane ^ delta
        out[lane] = (v[base + (src & (width - 1))], v[up] if up >= base else v[lane],
                     v[down] if down < base + width else v[lane], v[xor] if xor < base + width else v[lane], 0)
    ballot = sum(1 << lane for lane in range(32) if v[lane] > 0)
    out[:, 4] = np.array(ballot, np.uint32).view(np.int32)
    return out


@pytest.mark.parametrize("src, delta, width", ((5, 1, 32), (0, 16, 32), (3, 2, 8), (7, 4, 4), (33, 3, 16)))
def test_shuffles_and_ballot_follow_cuda(semantics, src, delta, width):
    v = np.random.default_rng(2).integers(-100, 100, size=64).astype(np.int32)
    out = device_memory.empty(64 * 5, np.int32)
    semantics.get_function("shuffles")((1,), (64,), (device_memory.to_device(v), out, np.int32(src),
                                                      np.int32(delta), np.int32(width)))
    got = out.get().reshape(64, 5)
    for warp in range(2):
        np.testing.assert_array_equal(got[32 * warp:32 * warp + 32],
                                      _expected_shuffles(v[32 * warp:32 * warp + 32], src, delta, width))


def test_block_votes_and_atomics(semantics):
    rng = np.random.default_rng(3)
    v = rng.integers(-5, 5, size=96).astype(np.int32)
    out = device_memory.empty(3, np.int32)
    semantics.get_function("block_votes")((1,), (96,), (device_memory.to_device(v), out))
    np.testing.assert_array_equal(out.get(), [(v > 0).sum(), (v > 0).all(), (v > 0).any()])
    v = rng.integers(-1000, 1000, size=3 * 64).astype(np.int32)
    total, top, count = device_memory.to_device(np.zeros(1, np.int32)), \
        device_memory.to_device(np.full(1, -2 ** 31, np.int32)), device_memory.to_device(np.zeros(1, np.uint64))
    semantics.get_function("atomics")((3,), (64,), (device_memory.to_device(v), total, top, count))
    assert (total.get()[0], top.get()[0], count.get()[0]) == (v.sum(), v.max(), v.size)


def test_dynamic_shared_memory_and_thread_coordinates(semantics):
    x = np.arange(3 * 40, dtype=np.float32)
    y = device_memory.empty(x.shape, np.float32)
    semantics.get_function("reverse_block")((3,), (40,), (device_memory.to_device(x), y), shared_mem=40 * 4)
    np.testing.assert_array_equal(y.get(), x.reshape(3, 40)[:, ::-1].reshape(-1))
    grid, block = (2, 3, 2), (4, 2, 3)
    out = device_memory.empty(12 * 24 * 6, np.uint32)
    semantics.get_function("indices")(grid, block, (out,))
    got = out.get().reshape(2, 3, 2, 3, 2, 4, 6)    # blocks z, y, x then threads z, y, x
    want = np.stack(np.meshgrid(np.arange(2), np.arange(3), np.arange(2), np.arange(3), np.arange(2), np.arange(4),
                                indexing="ij"), -1)[..., [2, 1, 0, 5, 4, 3]]
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- what the emulator reports


def _floats():
    return (device_memory.empty(32, np.float32),)


@pytest.mark.parametrize("name, block, args, match", [
    ("divergent_barrier", (32,), tuple, "__syncthreads is waited on by 16 threads"),
    ("exit_then_barrier", (8,), tuple, "1 threads of the block have exited"),
    ("shuffle_after_exit", (32,), _floats, "names lane 16, which has exited"),
    ("shuffle_outside_mask", (32,), _floats, "mask does not name the calling lane"),
    ("index_fixed_array", (8,), lambda: (device_memory.empty(8, np.int32),), "undefined behaviour"),
    ("trap", (8,), tuple, r"__trap\(\) called \(block \(0, 0, 0\) thread \(5, 0, 0\)\)"),
])
def test_misuse_fails_the_launch(misuse, name, block, args, match):
    with pytest.raises(EmulatedLaunchError, match=match):
        misuse.get_function(name)((1,), block, args())


def test_faults_name_the_argument_and_the_next_launch_runs(misuse):
    x, y = device_memory.to_device(np.arange(100, dtype=np.float32)), device_memory.empty(100, np.float32)
    fn = misuse.get_function("read_past_end")
    # thread 0 runs first; its second read, x[64 + 100], is 256 bytes past the 400 of x (the
    # bytes up to the next 256 boundary are poison, the guard page starts after them)
    with pytest.raises(EmulatedLaunchError, match=r"invalid memory access at address 0x[0-9a-f]+ \(block "
                       r"\(0, 0, 0\) thread \(0, 0, 0\)\); the address is 256 bytes past the end of the "
                       r"buffer of argument 0 \(float32, 100 elements\)"):
        fn((1,), (64,), (x, y, np.int64(100), np.int64(100)))
    fn((1,), (64,), (x, y, np.int64(50), np.int64(50)))   # the emulator recovers
    np.testing.assert_array_equal(y.get()[:50], np.arange(50, 100))
    with pytest.raises(EmulatedLaunchError, match=r"undefined behaviour.*null pointer.*\)$"):
        fn((1,), (64,), (None, y, np.int64(10), np.int64(0)))    # UBSan's null check
    a, b = device_memory.to_device(np.ones(8, np.int32)), device_memory.to_device(np.arange(8, dtype=np.int32))
    with pytest.raises(EmulatedLaunchError, match="undefined behaviour.*division by zero"):
        misuse.get_function("divide")((1,), (8,), (a, b, device_memory.empty(8, np.int32)))


@pytest.mark.parametrize("grid, block, shared, match", [
    ((1,), (2048,), 0, "invalid block"), ((1,), (32, 32, 2), 0, "invalid block"),
    ((1, 70000), (32,), 0, "invalid grid"), ((1,), (32,), 64 * 1024, "dynamic shared memory"),
])
def test_bad_launch_configurations(misuse, grid, block, shared, match):
    with pytest.raises(EmulatedLaunchError, match=match):
        misuse.get_function("divergent_barrier")(grid, block, (), shared_mem=shared)


def test_arguments_are_packed_and_checked_as_cupy_would(misuse):
    fn = misuse.get_function("takes")
    x = device_memory.to_device(np.array([1.5], np.float32))
    out = device_memory.empty(1, np.float64)
    pair = np.zeros(1, np.dtype([("a", "<i8"), ("b", "<f8")]))
    pair["a"], pair["b"] = 100, 0.25
    fn((1,), (1,), (x, 7, np.float32(2.0), pair, out))   # a Python int travels as int64
    assert out.get()[0] == 1.5 + 7 + 2.0 + 100 + 0.25
    cases = [((x, np.int32(7), np.float32(2), pair, out), r"argument 1 .* int32 \(4 bytes\)"),
             ((x, 7, 2.0, pair, out), r"argument 2 .* float64"),
             ((x, 7, np.float32(2), np.zeros(2, pair.dtype), out), "only arrays of size one"),
             ((device_memory.to_device(np.ones(1)), 7, np.float32(2), pair, out), "a float64 array given"),
             ((x, 7, np.float32(2), pair, np.zeros(1)), "a host value .* given for a pointer"),
             ((x, x, np.float32(2), pair, out), "device array given for a by-value"),
             ((x, 7, np.float32(2), pair), "takes 5 arguments, 4 given")]
    for args, match in cases:
        with pytest.raises(TypeError, match=match):
            fn((1,), (1,), args)
    with pytest.raises(TypeError, match="tuples"):
        fn([1], (1,), (x, 7, np.float32(2), pair, out))
    with pytest.raises(KeyError):
        RawModule(code=MISUSE, name_expressions=["trap"]).get_function("takes")


# ---------------------------------------------------------------- building


def test_the_cache_compiles_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ORTGPU_EMU_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "_loaded", {})
    code = "__global__ void copy(const int* x, int* y) { y[threadIdx.x] = x[threadIdx.x]; }"
    RawModule(code=code, name_expressions=["copy"])
    assert len(list(tmp_path.glob("*.so"))) == 1
    monkeypatch.setattr(build, "_loaded", {})      # a new process: only the disk cache is left
    real_run = subprocess.run

    def no_compile(cmd, *args, **kwargs):
        assert "--version" in cmd, "compiled again"
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(build.subprocess, "run", no_compile)
    x, y = device_memory.to_device(np.arange(5, dtype=np.int32)), device_memory.empty(5, np.int32)
    RawModule(code=code, name_expressions=["copy"]).get_function("copy")((1,), (5,), (x, y))
    np.testing.assert_array_equal(y.get(), np.arange(5))
    monkeypatch.setattr(build.subprocess, "run", real_run)
    RawModule(code=code + "\n", name_expressions=["copy"])   # other text, another library
    assert len(list(tmp_path.glob("*.so"))) == 2


def test_compile_errors_and_rewrites():
    with pytest.raises(build.EmulatorBuildError, match="no_such_type"):
        RawModule(code="__global__ void k(no_such_type* x) {}", name_expressions=["k"])
    text = build.rewrite_dynamic_shared("extern __shared__ __align__(16) unsigned char smem[];\n"
                                        "    extern __shared__ float2 tile [ ] ;")
    assert "unsigned char* const smem = reinterpret_cast<unsigned char*>(::ortgpu_emu::dynamic_shared());" in text
    assert "float2* const tile" in text
    with pytest.raises(build.EmulatorBuildError, match="extern __shared__"):
        build.rewrite_dynamic_shared("extern __shared__ float tile[64];")
    assert build.std_flag(("--std=c++17",)) == "-std=c++17" and build.std_flag(()) == "-std=c++17"


def test_install_skips_without_gxx(monkeypatch):
    monkeypatch.setattr(build, "compiler", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="g\\+\\+"):
        install(monkeypatch)


FTZ = r"""
__global__ void mul(const float* a, const float* b, float* out, i64 n) {
    for (i64 i = grid_start(); i < n; i += grid_step()) out[i] = a[i] * b[i];
}
__global__ void copy_f(const float* a, float* out, i64 n) {
    for (i64 i = grid_start(); i < n; i += grid_step()) out[i] = a[i];
}
"""
_SUBNORMAL = np.float32(1e-40)


def _ftz_run(options, name, *arrays):
    module = RawModule(code=COMMON + FTZ, options=options, name_expressions=["mul", "copy_f"])
    out = device_memory.empty(arrays[0].shape, np.float32)
    module.get_function(name)((1,), (32,), tuple(device_memory.to_device(a) for a in arrays)
                              + (out, np.int64(arrays[0].size)))
    return out.get()


def test_float32_subnormals_flush_to_zero_as_with_cupys_ftz():
    """CuPy compiles with -ftz=true: a product that is a float32 subnormal is 0 on the GPU, and
    a subnormal input reads as 0; a copy keeps it.  With -ftz=false the subnormal stays."""
    a = np.array([1e-20, 1e-20, _SUBNORMAL, -1e-20, 3.0], np.float32)
    b = np.array([1e-20, 1e-19, 1.0, 1e-20, 2.0], np.float32)
    want = a * b
    assert 0 < abs(want[0]) < np.finfo(np.float32).tiny and want[2] == _SUBNORMAL   # NumPy keeps them
    got = _ftz_run(cu.OPTIONS, "mul", a, b)
    np.testing.assert_array_equal(got, [0, 0, 0, 0, 6])
    assert np.signbit(got[3]), "a flushed result keeps its sign"
    np.testing.assert_array_equal(_ftz_run(cu.OPTIONS + ("-ftz=false",), "mul", a, b), want)
    np.testing.assert_array_equal(_ftz_run(cu.OPTIONS, "copy_f", a), a)


def test_assert_close_takes_a_flushed_float32_subnormal_only():
    from support.cuda_checks import assert_close, flush_float32
    want = np.array([1e-40, -1e-40, 1.0], np.float32)
    np.testing.assert_array_equal(flush_float32(want), [0, 0, 1])
    assert_close(np.array([0, -0.0, 1.0], np.float32), want, rtol=0, atol=0)
    assert_close(want.copy(), want, rtol=0, atol=0)
    with pytest.raises(AssertionError):
        assert_close(np.array([0, 0, 0], np.float32), want, rtol=0, atol=0)
    with pytest.raises(AssertionError):    # only a subnormal may come back as zero
        assert_close(np.array([0, 0], np.float64), np.array([1e-310, 0]), rtol=0, atol=0)
