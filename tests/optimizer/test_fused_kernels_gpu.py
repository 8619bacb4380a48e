"""The fused ops on the CUDA provider (`-m gpu`): each pattern of the fusion tests runs fused on
the GPU (the fused node placed on CUDA) and matches the CPU; float16 attention takes cuDNN's
SDPA where cudnn-frontend is installed.  Skipped without CuPy and a device.

Written without a GPU: these tests have never run yet.
"""
import numpy as np
import pytest

import ortgpu
from support.fusion_cases import assert_close, session

import test_attention_fusion as att
from test_fused_kernels import CASES

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def _has_cuda():
    try:
        return CUDA in ortgpu.get_available_providers()
    except Exception:  # a broken CUDA install skips the tier
        return False


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _has_cuda(), reason="no CUDA device with CuPy")]


def _cuda(model):
    return ortgpu.InferenceSession(model.SerializeToString(), providers=[(CUDA, {"use_tf32": "0"}), CPU])


@pytest.mark.parametrize("name", list(CASES))
def test_fused_op_runs_on_cuda_and_matches_the_cpu(name):
    model, feed, op = CASES[name]()
    gpu = _cuda(model)
    assert {o: p for _, o, p in gpu.get_provider_assignment()}[op] == CUDA
    assert_close(gpu.run(None, feed), session(model).run(None, feed), 1e-4, 1e-5)


@pytest.mark.parametrize("builder", ["bert", "gpt2"])
def test_float16_attention_on_cuda(builder):
    if builder == "bert":
        model, feed = att._bert(dtype=np.float16), att._feed(dtype=np.float16)
    else:
        model, feed = att._gpt2(dtype=np.float16), att._feed(past=True, dtype=np.float16)
    assert_close(_cuda(model).run(None, feed), session(model).run(None, feed), 5e-3, 5e-3)
