"""Corrupted model bytes never crash: every load or run ends in success or a typed error."""
import os

import numpy as np
import onnx.backend.test

import ortgpu
from ortgpu.errors import _OrtError
from ortgpu.sample_inputs import make_inputs

_LIGHT = os.path.join(os.path.dirname(onnx.backend.test.__file__), "data", "light", "light_squeezenet.onnx")


def test_random_corruptions_give_typed_errors():
    data = open(_LIGHT, "rb").read()
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(150):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            b = b[:int(rng.integers(1, len(b)))]
        try:
            sess = ortgpu.InferenceSession(bytes(b))
        except (_OrtError, ValueError) as e:
            outcomes.add(type(e).__name__)
            continue
        try:
            sess.run(None, make_inputs(sess))
            outcomes.add("ok")
        except (_OrtError, ValueError) as e:  # ValueError: an input type make_inputs cannot build
            outcomes.add("run:" + type(e).__name__)
    assert "InvalidProtobuf" in outcomes and "ok" in outcomes
