"""One served model version: its sessions (one per instance), its batcher and its published
inputs/outputs. Front ends (KServe, Ray Serve, Ray Data) share this code.

Sessions are created through the public onnxruntime-shaped API only (``InferenceSession``,
``SessionOptions``, ``io_binding``), so the same runner serves with ortgpu (the default) or with
onnxruntime as the backend: the benchmark compares the two through identical server code.
"""
from __future__ import annotations

import concurrent.futures
import importlib
from dataclasses import dataclass

import numpy as np

from .batching import DynamicBatcher
from .config import ServingConfig, session_settings
from .errors import BadRequest, ModelLoadError
from .tensors import TensorInfo, check_request, dims_of, protocol_datatype

BACKENDS = ("ortgpu", "onnxruntime")
DEFAULT_MAX_QUEUE_SIZE = 64


def backend_module(name: str):
    """The module whose InferenceSession/SessionOptions create the sessions."""
    if name not in BACKENDS:
        raise ModelLoadError(f"unknown backend {name!r}: expected one of {list(BACKENDS)}")
    return importlib.import_module(name)


@dataclass
class RunnerSettings:
    """Server-wide settings a model's config does not carry."""
    backend: str = "ortgpu"
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    batching: bool = True   # False: ignore dynamic_batching in configs (the benchmark's "off")


class ModelRunner:
    """Load `path` with `config`; :meth:`submit` checks a request and queues it."""

    def __init__(self, name: str, version: int, path: str, config: ServingConfig,
                 settings: RunnerSettings | None = None, on_batch=None):
        self.name, self.version, self.path, self.config = name, version, path, config
        self.settings = settings or RunnerSettings()
        module = backend_module(self.settings.backend)
        providers, _, provider_options = session_settings(config, module.SessionOptions)
        self.sessions = []
        for _ in range(max(1, config.instance_count)):
            _, so, _ = session_settings(config, module.SessionOptions)  # one SessionOptions per session
            try:
                self.sessions.append(module.InferenceSession(path, so, providers=providers,
                                                             provider_options=provider_options))
            except Exception as e:  # noqa: BLE001 - any load failure makes the model not ready
                raise ModelLoadError(f"model {name} version {version}: {type(e).__name__}: {e}") from None
        first = self.sessions[0]
        self.inputs = self._published(first.get_inputs(), config.inputs, "input")
        self.outputs = self._published(first.get_outputs(), config.outputs, "output")
        self.output_names = [o.name for o in first.get_outputs()]
        dynamic = config.dynamic_batching and self.settings.batching
        self.batcher = DynamicBatcher(
            [self._run_fn(s) for s in self.sessions], max_batch_size=config.max_batch_size, dynamic=dynamic,
            max_queue_delay_s=config.max_queue_delay_us * 1e-6, preferred_batch_sizes=config.preferred_batch_sizes,
            max_queue_size=config.max_queue_size or self.settings.max_queue_size, name=f"{name}:{version}",
            on_batch=on_batch)

    def _published(self, args, declared, kind: str) -> list[TensorInfo]:
        """The model's inputs/outputs as the protocol publishes them; checked against config.pbtxt."""
        batched = self.config.max_batch_size > 0
        infos = []
        for arg in args:
            dims = dims_of(arg)
            if batched:
                if not dims or dims[0] not in (-1,):
                    raise ModelLoadError(f"model {self.name}: {kind} {arg.name} has shape {list(dims)}, "
                                         "but max_batch_size > 0 needs a free first (batch) dimension")
                dims = (-1,) + dims[1:]
            infos.append(TensorInfo(arg.name, protocol_datatype(arg.type), dims))
        if declared:
            _check_declared(self.name, kind, infos, declared, batched)
        return infos

    def _run_fn(self, sess):
        """A function running one feed dict on `sess` through an IOBinding (outputs bound on the
        CPU), or through run() for string tensors, which IOBinding does not carry."""
        names = self.output_names
        strings = any(t.datatype == "BYTES" for t in self.inputs + self.outputs)
        if strings:
            return lambda feeds: sess.run(names, feeds)
        binding = sess.io_binding()

        def run(feeds):
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            for key, value in feeds.items():
                binding.bind_cpu_input(key, np.ascontiguousarray(value))
            for n in names:
                binding.bind_output(n, "cpu")
            sess.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()
        return run

    def check(self, feeds: dict[str, np.ndarray]) -> int:
        """Check a decoded request; its batch size (BadRequest when it does not fit the model)."""
        return check_request({k: (_datatype(v), v.shape) for k, v in feeds.items()}, self.inputs,
                             self.config.max_batch_size)

    def submit(self, feeds: dict[str, np.ndarray]) -> concurrent.futures.Future:
        """Check and queue one request; the future's result is the list of outputs (model order)."""
        return self.batcher.submit(feeds, self.check(feeds))

    def run(self, feeds: dict[str, np.ndarray], timeout: float | None = None) -> list[np.ndarray]:
        """Blocking submit (Ray Data and tests)."""
        return self.submit(feeds).result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.batcher.close(timeout)


def _datatype(value: np.ndarray) -> str:
    from .tensors import datatype_of
    return datatype_of(value)


def _check_declared(model: str, kind: str, infos: list[TensorInfo], declared, batched: bool) -> None:
    by_name = {t.name: t for t in infos}
    for spec in declared:
        info = by_name.get(spec.name)
        if info is None:
            raise ModelLoadError(f"model {model}: config.pbtxt declares {kind} {spec.name!r}, the model's "
                                 f"{kind}s are {list(by_name)}")
        if spec.datatype != info.datatype:
            raise ModelLoadError(f"model {model}: config.pbtxt declares {kind} {spec.name} as {spec.datatype}, "
                                 f"the model has {info.datatype}")
        model_dims = info.shape[1:] if batched else info.shape
        if len(spec.dims) != len(model_dims) or any(
                a != b and -1 not in (a, b) for a, b in zip(spec.dims, model_dims)):
            raise ModelLoadError(f"model {model}: config.pbtxt declares {kind} {spec.name} with dims "
                                 f"{list(spec.dims)}, the model has {list(model_dims)}"
                                 + (" (without the batch dimension)" if batched else ""))


__all__ = ["BACKENDS", "BadRequest", "ModelRunner", "RunnerSettings", "backend_module"]
