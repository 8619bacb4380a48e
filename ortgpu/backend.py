"""onnx.backend adapter, so that the ONNX backend test suite can drive ortgpu.

``prepare(model, device)`` builds an InferenceSession on the provider for `device`
("CPU" or "CUDA"); ``rep.run(inputs)`` feeds the non-initializer inputs by position.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from ortgpu.providers_select import get_available_providers
from ortgpu.session import InferenceSession

# TF32 off on CUDA: the suite's rtol of 1e-3 is tighter than TF32 GEMMs and convolutions give.
_DEVICE_PROVIDERS = {"CPU": ["CPUExecutionProvider"],
                     "CUDA": [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]}


class OrtGpuRep(BackendRep):
    def __init__(self, session: InferenceSession):
        self.session = session
        self._names = [i.name for i in session.get_inputs()]

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feed = inputs
        else:
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            feed = dict(zip(self._names, inputs))
        return self.session.run(None, feed)


class OrtGpuBackend(Backend):
    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        device = str(device).split(":")[0].upper()
        if device == "CPU":
            return True
        if device == "CUDA":
            return "CUDAExecutionProvider" in get_available_providers()
        return False

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        device = str(device).split(":")[0].upper()
        if isinstance(model, OrtGpuRep):
            return model
        sess = InferenceSession(model if not isinstance(model, str) else model,
                                providers=_DEVICE_PROVIDERS[device])
        return OrtGpuRep(sess)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """Run one node on arrays: builds a one-node model with types taken from the inputs."""
        from ortgpu.dtypes import onnx_code
        ins = [onnx.helper.make_tensor_value_info(n, onnx_code(np.asarray(v).dtype), np.shape(v))
               for n, v in zip(node.input, inputs)]
        outs = [onnx.helper.make_empty_tensor_value_info(n) for n in node.output]
        graph = onnx.helper.make_graph([node], "run_node", ins, outs)
        model = onnx.helper.make_model(graph)
        return cls.run_model(model, inputs, device)


prepare = OrtGpuBackend.prepare
run_model = OrtGpuBackend.run_model
run_node = OrtGpuBackend.run_node
supports_device = OrtGpuBackend.supports_device
is_compatible = OrtGpuBackend.is_compatible
