"""Real models with the fusion and layout passes on a device provider (the test double, so the
fused nodes run their shared kernels on the CPU): ORT_ENABLE_ALL gives the outputs of
ORT_DISABLE_ALL.  `-m models` for the model zoo (CI), `-m transformers` for the torch exports."""
import numpy as np
import pytest

import ortgpu
from ortgpu.optimizer import pattern_fusions
from support.device_double import providers as double_providers

_ALL, _OFF = ortgpu.GraphOptimizationLevel.ORT_ENABLE_ALL, ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL


def _outputs(path, feeds, level):
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = level
    # the pattern fusions off, so that the element-wise chains they would take are counted here
    sess = ortgpu.InferenceSession(path, so, providers=double_providers(),
                                   disabled_optimizers=pattern_fusions())
    return sess, sess.run(None, feeds)


def _compare(path, feeds, rtol, atol):
    fused, got = _outputs(path, feeds, _ALL)
    plain, want = _outputs(path, feeds, _OFF)
    n_fused = fused._optimizations.get("ElementwiseChainFusion", 0)
    assert n_fused > 0, "nothing was fused"
    print(f"{path}: {len(plain._core.plan.steps)} steps -> {len(fused._core.plan.steps)} ({n_fused} fused nodes)")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.models
@pytest.mark.parametrize("name, shape", [("ppocrv4_det", (1, 3, 256, 320)), ("ppocrv4_rec", (1, 3, 48, 320)),
                                         ("ppocr_cls", (2, 3, 48, 192))])
def test_model_zoo_fused_equals_unoptimized(name, shape):
    from support.model_zoo import image_input, model_path
    _compare(model_path(name), {"x": image_input(shape)}, rtol=1e-4, atol=1e-5)


@pytest.mark.transformers
@pytest.mark.parametrize("name", ["bert_base", "gpt2_decode", "resnet50"])
def test_transformer_exports_fused_equal_unoptimized(name):
    from support import transformer_models as tm
    _compare(tm.export(name), tm.make_inputs(name), rtol=1e-4, atol=1e-4)
