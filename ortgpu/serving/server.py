"""``ortgpu serve``: KServe's REST and gRPC front ends over an :class:`OrtgpuRegistry`.

KServe's ``ModelServer.start`` binds every interface (0.0.0.0 / [::]); ortgpu assembles the same
parts itself so that it listens on the host it is given (127.0.0.1 by default): KServe's
``DataPlane``, model-repository extension, v2 REST endpoints, error handlers, gRPC servicer and
Prometheus registry, with the inference, metadata and readiness routes replaced by versions that
know model versions, decode every request strictly (400, never 500, for a malformed one) and
report why a model is not ready. Also here: the request-size limit (413 / RESOURCE_EXHAUSTED),
the queue limit (503 / UNAVAILABLE), and SIGTERM/SIGINT draining in-flight requests before exit.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from concurrent import futures
from dataclasses import dataclass

import grpc
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from grpc import StatusCode
from kserve import errors as kerrors
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import metrics_handler
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from prometheus_client import Counter

from .kserve_model import ServerBusy, decode_grpc_request, decode_rest_body
from .registry import OrtgpuRegistry
from .repository import Repository
from .runner import RunnerSettings

log = logging.getLogger("ortgpu.serving")
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024

BATCHES = Counter("ortgpu_batches", "Batches run per model", ["model"])
BATCHED_REQUESTS = Counter("ortgpu_batched_requests", "Requests answered through batches per model", ["model"])


def count_batch(model: str, requests: int, items: int) -> None:
    BATCHES.labels(model=model).inc()
    BATCHED_REQUESTS.labels(model=model).inc(requests)


@dataclass
class ServeOptions:
    """Everything ``ortgpu serve`` takes on its command line."""
    repository: str
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    enable_grpc: bool = True
    backend: str = "ortgpu"
    max_queue_size: int = 64
    batching: bool = True
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grace_period_s: float = 30.0


class _PendingCollector:
    """``ortgpu_requests_pending{model,version}``: requests queued or running, read at scrape time."""

    def __init__(self, registry: OrtgpuRegistry):
        self.registry = registry

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        family = GaugeMetricFamily("ortgpu_requests_pending", "Requests queued or running per model version",
                                   labels=["model", "version"])
        for name, versions in list(self.registry.versions.items()):
            for version, model in list(versions.items()):
                if model.runner is not None:
                    family.add_metric([name, str(version)], model.runner.batcher.pending())
        yield family


def make_registry(options: ServeOptions) -> OrtgpuRegistry:
    settings = RunnerSettings(options.backend, options.max_queue_size, options.batching)
    registry = OrtgpuRegistry(Repository(options.repository), settings, on_batch=count_batch)
    registry.load_models()
    from prometheus_client import REGISTRY
    REGISTRY.register(_PendingCollector(registry))
    return registry


# -- REST ------------------------------------------------------------------------------------------
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def build_app(registry: OrtgpuRegistry, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    """The FastAPI application: ortgpu's model routes first, then KServe's v2 routes."""
    dataplane = DataPlane(model_registry=registry)
    extension = ModelRepositoryExtension(model_registry=registry)
    app = FastAPI(title="ortgpu serve", docs_url=None, redoc_url=None)
    _add_model_routes(app, registry)
    app.add_api_route("/", dataplane.live, methods=["GET"])
    app.add_api_route("/metrics", metrics_handler, methods=["GET"])
    register_v2_endpoints(app, dataplane, extension)
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, limit=max_request_bytes)
    return app


def _add_model_routes(app: FastAPI, registry: OrtgpuRegistry) -> None:
    async def metadata(model_name: str, model_version: str | None = None):
        model = registry.resolve(model_name, model_version)
        if not model.ready:
            raise model.not_ready_error()
        return model.metadata()

    async def ready(model_name: str, model_version: str | None = None):
        model = registry.resolve(model_name, model_version)
        if not model.ready:
            raise model.not_ready_error()
        return {"name": model_name, "ready": True}

    async def infer(request: Request, model_name: str, model_version: str | None = None):
        model = registry.resolve(model_name, model_version)
        body = await request.body()
        decoded = decode_rest_body(body, request.headers.get("inference-header-content-length"))
        response = await model.run_decoded(decoded)
        content, json_size = response.to_rest()
        if json_size is None:
            return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
                            media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"inference-header-content-length": str(json_size)})

    async def load(model_name: str):
        if not await asyncio.to_thread(registry.load, model_name):
            raise registry.resolve(model_name).not_ready_error()
        return {"name": model_name, "load": True}

    async def unload(model_name: str):
        registry.unload(model_name)
        return {"name": model_name, "unload": True}

    for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
        app.add_api_route(prefix, metadata, methods=["GET"])
        app.add_api_route(prefix + "/ready", ready, methods=["GET"])
        app.add_api_route(prefix + "/infer", infer, methods=["POST"])
    app.add_api_route("/v2/repository/models/{model_name}/load", load, methods=["POST"])
    app.add_api_route("/v2/repository/models/{model_name}/unload", unload, methods=["POST"])


_HTTP_STATUS = ((ServerBusy, 503), (kerrors.InvalidInput, 400), (kerrors.ModelNotFound, 404),
                (kerrors.ModelNotReady, 503), (kerrors.ServerNotReady, 503), (kerrors.ServerNotLive, 503),
                (kerrors.InferenceError, 500), (NotImplementedError, 501))


def _add_error_handlers(app: FastAPI) -> None:
    """The protocol's error object ``{"error": message}`` for every failure; client errors are
    logged as one line, unexpected ones with their traceback (in the log, never in the reply)."""
    def handler(status):
        def handle(request, e):
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, e)
            return _error(status, str(e))
        return handle
    for kind, status in _HTTP_STATUS:
        app.add_exception_handler(kind, handler(status))
    app.add_exception_handler(RequestValidationError, lambda _, e: _error(400, f"invalid request: {e.errors()}"))
    app.add_exception_handler(_TooLarge, lambda _, e: _error(413, str(e)))

    def unexpected(request, e):
        log.error("%s %s: unexpected error", request.method, request.url.path, exc_info=e)
        return _error(500, f"{type(e).__name__}: {e}")
    app.add_exception_handler(Exception, unexpected)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 (by its Content-Length before
    reading, or while streaming when it has none)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._reject(send, int(length))
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge(f"request body of more than {self.limit} bytes exceeds the limit of "
                                f"{self.limit} bytes")
            return message
        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:  # raised before the app answered (else its handler answered 413)
            await self._reject(send, seen)

    async def _reject(self, send, size: int) -> None:
        body = orjson.dumps({"error": f"request body of {size} bytes exceeds the limit of {self.limit} bytes"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


# -- gRPC ------------------------------------------------------------------------------------------
_GRPC_STATUS = ((ServerBusy, StatusCode.UNAVAILABLE), (kerrors.InvalidInput, StatusCode.INVALID_ARGUMENT),
                (kerrors.ModelNotFound, StatusCode.NOT_FOUND), (kerrors.ModelNotReady, StatusCode.UNAVAILABLE),
                (kerrors.ServerNotReady, StatusCode.UNAVAILABLE), (kerrors.InferenceError, StatusCode.INTERNAL),
                (NotImplementedError, StatusCode.UNIMPLEMENTED))


class OrtgpuServicer(InferenceServicer):
    """KServe's gRPC servicer with version-aware metadata/readiness/inference and errors mapped to
    status codes with their message (no traceback, never a bare INTERNAL for bad input)."""

    def __init__(self, registry: OrtgpuRegistry, dataplane: DataPlane, extension: ModelRepositoryExtension):
        super().__init__(dataplane, extension)
        self.registry = registry

    async def _guard(self, context, coro):
        try:
            return await coro
        except Exception as e:  # noqa: BLE001 - every error becomes a status with its message
            for kind, code in _GRPC_STATUS:
                if isinstance(e, kind):
                    await context.abort(code, str(e))
            log.error("gRPC: unexpected error: %s", e, exc_info=True)
            await context.abort(StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    async def ModelInfer(self, request, context):
        async def infer():
            model = self.registry.resolve(request.model_name, request.model_version)
            response = await model.run_decoded(decode_grpc_request(request))
            return grpc_response(response)
        return await self._guard(context, infer())

    async def ModelMetadata(self, request, context):
        async def metadata():
            model = self.registry.resolve(request.name, request.version)
            if not model.ready:
                raise model.not_ready_error()
            m = model.metadata()
            return pb.ModelMetadataResponse(
                name=m["name"], versions=m["versions"], platform=m["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in m["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in m["outputs"]])
        return await self._guard(context, metadata())

    async def ModelReady(self, request, context):
        async def ready():
            return pb.ModelReadyResponse(ready=self.registry.resolve(request.name, request.version).ready)
        return await self._guard(context, ready())


def grpc_response(response) -> pb.ModelInferResponse:
    """A ModelInferResponse with every output in raw_output_contents (what Triton's gRPC clients
    read; BYTES length-prefixed as the protocol defines)."""
    from kserve.protocol.infer_type import serialize_byte_tensor
    import numpy as np
    outputs, raw = [], []
    for out in response.outputs:
        array = np.asarray(out.data)
        outputs.append(pb.ModelInferResponse.InferOutputTensor(name=out.name, datatype=out.datatype,
                                                               shape=list(array.shape)))
        raw.append(serialize_byte_tensor(array).tobytes() if out.datatype == "BYTES"
                   else np.ascontiguousarray(array).tobytes())
    return pb.ModelInferResponse(model_name=response.model_name, model_version=response.model_version or "",
                                 id=response.id, outputs=outputs, raw_output_contents=raw)


def build_grpc_server(registry: OrtgpuRegistry, host: str, port: int, max_message_bytes: int):
    dataplane = DataPlane(model_registry=registry)
    extension = ModelRepositoryExtension(model_registry=registry)
    server = grpc.aio.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes)])
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        OrtgpuServicer(registry, dataplane, extension), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"gRPC: cannot listen on {host}:{port}")
    return server


# -- process ---------------------------------------------------------------------------------------
class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: :func:`serve` drains the models first."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def serve_async(options: ServeOptions, registry: OrtgpuRegistry | None = None) -> None:
    """Run until SIGTERM/SIGINT; then stop accepting, finish in-flight requests, drain queues."""
    registry = registry or make_registry(options)
    if not registry.models:
        raise SystemExit(f"ortgpu serve: no model folder in {options.repository!r}")
    app = build_app(registry, options.max_request_bytes)
    config = uvicorn.Config(app, host=options.host, port=options.http_port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=int(options.grace_period_s), lifespan="off")
    http = _Uvicorn(config)
    grpc_server = (build_grpc_server(registry, options.host, options.grpc_port, options.max_request_bytes)
                   if options.enable_grpc else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if grpc_server is not None:
        await grpc_server.start()
    http_task = asyncio.create_task(http.serve())
    log.info("ortgpu serve: %d model(s) on http://%s:%d%s", len(registry.models), options.host, options.http_port,
             f" and grpc {options.host}:{options.grpc_port}" if grpc_server else "")
    await asyncio.wait([http_task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    log.info("ortgpu serve: stopping; draining in-flight requests")
    http.should_exit = True
    if grpc_server is not None:
        await grpc_server.stop(grace=options.grace_period_s)
    await http_task
    await asyncio.to_thread(registry.stop_all)
    log.info("ortgpu serve: stopped")


def serve(options: ServeOptions) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve_async(options))
    return 0
