"""The raw CUDA kernels of com.microsoft ops (providers/cuda/kernels/contrib_*.cu) on a real
device: the cases of ``test_cuda_contrib_kernels_emulated.py`` run again with CuPy in place of
the host emulator, against the same shared NumPy kernels and tolerances.

Every test needs CuPy and a CUDA device (``pytest -m gpu``) and skips cleanly without them.
Written without a GPU: these tests have not run on one yet.
"""
from __future__ import annotations

import pytest

from support.cuda_checks import require_cuda_device
from ortgpu.providers.cuda.kernels import module as cu

pytestmark = pytest.mark.gpu

cupy = require_cuda_device()

import test_cuda_contrib_kernels_emulated as cases  # noqa: E402  (after the device check)


class RealCuda:
    """What the emulated tests read from their fixture: ``cupy`` and the kernels launched."""

    def __init__(self):
        self.cupy = cupy
        self.launches: list[str] = []

    def names(self) -> list[str]:
        return list(self.launches)


@pytest.fixture
def real_cuda(monkeypatch):
    """Real CuPy, with every launch of a compiled kernel recorded by name."""
    state = RealCuda()
    compiled = cu.function

    def recording(unit, name):
        fn = compiled(unit, name)

        def launch(*args, **kwargs):
            state.launches.append(name)
            return fn(*args, **kwargs)
        return launch

    monkeypatch.setattr(cu, "function", recording)
    return state


@pytest.mark.parametrize("dtype", cases.HALF_FLOATS, ids=str)
@pytest.mark.parametrize("shape, skip_shape, with_beta, with_bias", cases.SKIP_LN_CASES, ids=str)
@pytest.mark.parametrize("op", ["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"])
def test_skip_layernorm(op, shape, skip_shape, with_beta, with_bias, dtype, real_cuda):
    cases.test_skip_layernorm(op, shape, skip_shape, with_beta, with_bias, dtype, real_cuda)


@pytest.mark.parametrize("dtype", cases.HALF_FLOATS, ids=str)
@pytest.mark.parametrize("op, shapes, attrs, name", cases.GELU_CASES, ids=str)
def test_gelu_family(op, shapes, attrs, name, dtype, real_cuda):
    cases.test_gelu_family(op, shapes, attrs, name, dtype, real_cuda)


@pytest.mark.parametrize("dtype", cases.HALF_FLOATS, ids=str)
@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("shape, num_heads, rot, pos_kind", cases.ROTARY_CASES, ids=str)
def test_rotary_embedding(shape, num_heads, rot, pos_kind, interleaved, dtype, real_cuda):
    cases.test_rotary_embedding(shape, num_heads, rot, pos_kind, interleaved, dtype, real_cuda)


@pytest.mark.parametrize("dtype", cases.HALF_FLOATS, ids=str)
@pytest.mark.parametrize("rows, K, N, bits, block_size, zp_kind, with_bias", cases.NBITS_CASES, ids=str)
def test_matmul_nbits(rows, K, N, bits, block_size, zp_kind, with_bias, dtype, real_cuda):
    cases.test_matmul_nbits(rows, K, N, bits, block_size, zp_kind, with_bias, dtype, real_cuda)


@pytest.mark.parametrize("dtype", cases.HALF_FLOATS, ids=str)
@pytest.mark.parametrize("shape, groups, activation, f32_params, skip_shape, with_bias", cases.GROUPNORM_CASES,
                         ids=str)
def test_group_norm(shape, groups, activation, f32_params, skip_shape, with_bias, dtype, real_cuda):
    cases.test_group_norm(shape, groups, activation, f32_params, skip_shape, with_bias, dtype, real_cuda)


@pytest.mark.parametrize("dtype", cases.HALF_FLOATS, ids=str)
@pytest.mark.parametrize("b, s, n, n_kv, d, past, packed, rotary, attrs", cases.GQA_CASES, ids=str)
def test_group_query_attention(b, s, n, n_kv, d, past, packed, rotary, attrs, dtype, real_cuda):
    cases.test_group_query_attention(b, s, n, n_kv, d, past, packed, rotary, attrs, dtype, real_cuda)
