"""Scale-out on Ray Serve: each repository model as a Ray Serve deployment whose replicas run the
same :class:`ModelRunner` (sessions, dynamic batching, bounded queue) as ``ortgpu serve``.

``ortgpu serve REPO --ray [--ray-address ADDR] [--num-replicas N]`` starts (or joins) a Ray
cluster, deploys one application per model and serves them through the same KServe REST/gRPC
front end on the given host; each request is forwarded to a replica through a Ray Serve handle.
From Python::

    from ortgpu.serving.ray_serve import deploy_model
    handle = deploy_model("models/", "resnet", num_replicas=4)          # or autoscaling_config={...}
    outputs = handle.infer.remote({"images": batch}).result()          # dict of NumPy arrays

Replicas take one GPU each when the cluster has GPUs (``num_gpus=1``), none otherwise. Nothing
here imports kserve at module level: the replicas import it only for the KServe front end path.
"""
from __future__ import annotations

import logging
import os

import numpy as np
from ray import serve

log = logging.getLogger("ortgpu.serving")


@serve.deployment
class OrtgpuReplica:
    """One replica: the runner of one model (its default version) of a repository folder."""

    def __init__(self, repository: str, model: str, backend: str = "ortgpu", max_queue_size: int = 64,
                 batching: bool = True, version: int | None = None):
        from .config import ServingConfig, parse_config
        from .repository import Repository, model_file, select_versions
        from .runner import ModelRunner, RunnerSettings
        entry = Repository(repository).entry(model)
        config = ServingConfig()
        if entry.config_path:
            with open(entry.config_path, encoding="utf-8") as f:
                config = parse_config(f.read(), entry.config_path)
        served = select_versions(list(entry.versions), config.version_policy, config.num_versions,
                                 config.specific_versions)
        self.version = version if version is not None else max(served)
        self.runner = ModelRunner(model, self.version, model_file(entry.versions[self.version], config.model_filename),
                                  config, RunnerSettings(backend, max_queue_size, batching))

    async def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Python callers: inputs by name in, outputs by name out (checked like a server request)."""
        import asyncio
        outputs = await asyncio.wrap_future(self.runner.submit({k: np.asarray(v) for k, v in feeds.items()}))
        return dict(zip(self.runner.output_names, outputs))

    def metadata(self) -> dict:
        return {"version": self.version, "inputs": [t.as_metadata() for t in self.runner.inputs],
                "outputs": [t.as_metadata() for t in self.runner.outputs]}

    def replica_pid(self) -> int:
        return os.getpid()


def _gpus_available() -> bool:
    import ray
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def deployment(repository: str, model: str, *, num_replicas: int = 1, autoscaling_config: dict | None = None,
               num_gpus: float | None = None, backend: str = "ortgpu", max_queue_size: int = 64,
               batching: bool = True):
    """The bound Ray Serve application of one model (pass to ``serve.run``). `autoscaling_config`
    (Ray Serve's dict: min_replicas, max_replicas, target_ongoing_requests, ...) replaces
    `num_replicas`; `num_gpus` defaults to 1 per replica when the cluster has GPUs."""
    gpus = num_gpus if num_gpus is not None else (1 if _gpus_available() else 0)
    options = {"name": f"ortgpu-{model}", "ray_actor_options": {"num_gpus": gpus},
               "max_ongoing_requests": max(8, max_queue_size)}
    if autoscaling_config:
        options["autoscaling_config"] = autoscaling_config
    else:
        options["num_replicas"] = num_replicas
    return OrtgpuReplica.options(**options).bind(os.path.abspath(repository), model, backend, max_queue_size, batching)


def deploy_model(repository: str, model: str, **kwargs):
    """Deploy one model as its own Ray Serve application; returns its DeploymentHandle."""
    return serve.run(deployment(repository, model, **kwargs), name=f"ortgpu-{model}", route_prefix=None)


def start_local_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Join `address`, or start a local Ray instance bound to 127.0.0.1 (no dashboard)."""
    import ray
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    serve.start(proxy_location="Disabled")


def serve_with_ray(options, address: str | None = None, num_replicas: int = 1) -> int:
    """``ortgpu serve --ray``: deploy every model, then the KServe front end forwarding to them."""
    import asyncio
    from .registry import OrtgpuRegistry
    from .repository import Repository
    from .runner import RunnerSettings
    from .server import count_batch, serve_async
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    start_local_ray(address=address)
    repository = Repository(options.repository)
    registry = OrtgpuRegistry(repository, RunnerSettings(options.backend, options.max_queue_size, options.batching),
                              on_batch=count_batch)
    for name in repository.models:
        registry.update(_ray_model_class().deploy(options, name, num_replicas), name)
    try:
        asyncio.run(serve_async(options, registry))
    finally:
        serve.shutdown()
    return 0


def _ray_model_class():
    from .kserve_model import OrtgpuModel

    class _RayBackedModel(OrtgpuModel):
        """The front end's view of a Ray Serve deployment: requests go to a replica's runner."""

        @classmethod
        def deploy(cls, options, name: str, num_replicas: int):
            model = cls(name, 0, None)
            try:
                model.handle = deploy_model(options.repository, name, num_replicas=num_replicas,
                                            backend=options.backend, max_queue_size=options.max_queue_size,
                                            batching=options.batching)
                model.meta = model.handle.metadata.remote().result()
                model.version = model.meta["version"]
                model.ready = True
            except Exception as e:  # noqa: BLE001 - a model that fails to deploy is not ready
                model.load_error = f"{type(e).__name__}: {e}"
                log.error("model %s: %s", name, model.load_error)
            return model

        def load(self, retry: bool = False) -> bool:
            return self.ready

        def get_input_types(self):
            return self.meta["inputs"] if self.ready else []

        def get_output_types(self):
            return self.meta["outputs"] if self.ready else []

        async def run_decoded(self, req):
            from kserve.errors import InferenceError, InvalidInput
            from .errors import BadRequest, QueueFull
            from .kserve_model import ServerBusy
            if not self.ready:
                raise self.not_ready_error()
            try:
                by_name = await self.handle.infer.remote(req.feeds)
            except BadRequest as e:
                raise InvalidInput(str(e)) from None
            except Exception as e:  # noqa: BLE001 - Ray wraps the replica's error
                cause = getattr(e, "cause", None)
                if isinstance(cause, BadRequest):
                    raise InvalidInput(str(cause)) from None
                if isinstance(cause, QueueFull):
                    raise ServerBusy(str(cause)) from None
                raise InferenceError(f"model {self.name}: {type(e).__name__}: {e}") from None
            self.runner = _Names(list(by_name))
            return self._response(req, list(by_name.values()))

    return _RayBackedModel


class _Names:
    def __init__(self, names):
        self.output_names = names
