"""MatMulFpQ4 (MLAS's int4 blob with inline scales and zero points) against onnxruntime 1.32's CPU
kernel over seeded random configurations: symmetric and zero-point blocks, K not a multiple of
the 32-value block, batched A, the attribute absent, and onnxruntime's reading of
blk_quant_type 2 (the spec's blocks of 64) as the zero-point format."""
from __future__ import annotations

import numpy as np
import pytest

import ortgpu
from support.quant_oracle import assert_close, model, rng_for, run_both

N_CASES = 16


def _blob(rng, K, N, with_zero_point):
    """Random blocks in MLAS's layout: per column, per 32 values: scale, [zero point], 16 bytes."""
    kb = -(-K // 32)
    scale = (rng.normal(size=(N, kb)) * 0.1).astype(np.float32)
    parts = [scale.view(np.uint8).reshape(N, kb, 4)]
    if with_zero_point:
        parts.append(rng.integers(0, 16, (N, kb, 1)).astype(np.uint8))
    parts.append(rng.integers(0, 256, (N, kb, 16)).astype(np.uint8))
    return np.concatenate(parts, axis=-1).reshape(-1)


def _case(i):
    rng = rng_for("MatMulFpQ4", i)
    K = int(rng.integers(1, 4)) * 32 - int(rng.choice([0, 0, 7]))
    N = int(rng.integers(1, 10))
    qtype = [0, 1, None, 2][i % 4]          # None: attribute absent
    zp = qtype != 0
    A = rng.normal(size=tuple(rng.integers(1, 4, int(rng.integers(1, 4)))) + (K,)).astype(np.float32)
    attrs = {} if qtype is None else {"blk_quant_type": qtype}
    consts = {"B": _blob(rng, K, N, zp), "B_shape": np.array([K, N], np.int64)}
    return model("MatMulFpQ4", ["A", "B", "B_shape"], {"A": A}, consts, attrs=attrs), {"A": A}


@pytest.mark.parametrize("i", range(N_CASES))
def test_matmul_fpq4_matches_onnxruntime(i):
    m, feeds = _case(i)
    got, want = run_both(m, feeds)
    assert_close(got, want, rtol=1e-5, atol=1e-5, what=f"MatMulFpQ4 case {i}")


def test_matmul_fpq4_blob_of_the_wrong_size_is_refused():
    rng = np.random.default_rng(0)
    A = np.ones((2, 32), np.float32)
    consts = {"B": _blob(rng, 32, 4, False), "B_shape": np.array([32, 4], np.int64)}
    m = model("MatMulFpQ4", ["A", "B", "B_shape"], {"A": A}, consts, attrs={"blk_quant_type": 1})
    with pytest.raises(ortgpu.capi.onnxruntime_pybind11_state.InvalidArgument, match="MatMulFpQ4.*bytes"):
        ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"A": A})
