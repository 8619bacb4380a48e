"""Shared by the com.microsoft quantized-op tests: build a one-node model, run it on onnxruntime
(the oracle) and on ortgpu's CPU provider, and compare within a stated tolerance."""
from __future__ import annotations

import contextlib
import os
import zlib

import numpy as np
import onnxruntime
from onnx import helper, numpy_helper

import ortgpu
from ortgpu.dtypes import onnx_code

from support.device_double import providers as double_providers  # noqa: E402

MS = "com.microsoft"
CPU = ["CPUExecutionProvider"]
onnxruntime.set_default_logger_severity(3)


def rng_for(op: str, i: int) -> np.random.Generator:
    """The generator of configuration i of an op (replayable from the test id)."""
    return np.random.default_rng([zlib.crc32(op.encode()), i])




def model(op, order, feeds: dict, consts: dict, n_outputs=1, attrs=None, domain=MS, opset=21,
          out_names=None):
    """Serialized model with one node; `order` lists the node's inputs ('' for an absent one)."""
    graph_inputs = [helper.make_tensor_value_info(k, onnx_code(v.dtype), list(v.shape)) for k, v in feeds.items()]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    outs = out_names or [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, list(order), outs, domain=domain, **(attrs or {}))
    g = helper.make_graph([node], op, graph_inputs, [helper.make_value_info(o, helper.TypeProto()) for o in outs],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)],
                          ir_version=10)
    return m.SerializeToString()


@contextlib.contextmanager
def numpy_bodies():
    """ortgpu's CPU kernels with their NumPy bodies (ORTGPU_JIT=0): the code the device double
    runs, where the compiled CPU bodies (providers/cpu) sum in another order and a requantized
    value may round across a step."""
    before = os.environ.get("ORTGPU_JIT")
    os.environ["ORTGPU_JIT"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["ORTGPU_JIT"]
        else:
            os.environ["ORTGPU_JIT"] = before


def run_both(model_bytes, feeds):
    """(ortgpu's outputs, onnxruntime's).  ortgpu also runs the model on the device double
    (tests/support/device_double.py), whose arrays refuse implicit host conversion, and must give the
    same outputs there as its NumPy bodies on the CPU: the shared kernels are array-module clean."""
    want = onnxruntime.InferenceSession(model_bytes, providers=CPU).run(None, feeds)
    got = ortgpu.InferenceSession(model_bytes, providers=CPU).run(None, feeds)
    with numpy_bodies():
        host = ortgpu.InferenceSession(model_bytes, providers=CPU).run(None, feeds)
    on_double = ortgpu.InferenceSession(model_bytes, providers=double_providers()).run(None, feeds)
    for d, g in zip(on_double, host):
        np.testing.assert_allclose(np.asarray(d, np.float64), np.asarray(g, np.float64), rtol=1e-6, atol=1e-6,
                                   err_msg="device double vs CPU")
    return got, want


def assert_close(got, want, *, rtol=1e-5, atol=1e-5, steps=0, what=""):
    """Floats within rtol/atol; integers equal, or within `steps` quantization steps."""
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{what}: dtype {g.dtype} != {w.dtype}"
        if w.dtype.kind in "iu":
            diff = np.abs(g.astype(np.int64) - w.astype(np.int64))
            assert diff.max(initial=0) <= steps, f"{what}: {int(diff.max())} steps apart (allowed {steps})"
        else:
            np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=rtol, atol=atol,
                                       err_msg=what)
