"""The served model as a KServe model, and the request decoding shared by REST and gRPC.

:class:`OrtgpuModel` is a ``kserve.Model``: KServe's model registry, readiness and metadata
endpoints see it as any other model. Inference requests are decoded here rather than by KServe's
generic decoder so that every malformed request (bad JSON, missing fields, a binary section of the
wrong size, wrong datatype or shape) gets a 400 naming the input instead of a 500; the response
is encoded by KServe's ``InferResponse`` (JSON, binary tensor data, or gRPC).
"""
from __future__ import annotations

import asyncio
import logging
import uuid

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput, ModelNotReady, ServerNotReady
from kserve.protocol.infer_type import InferOutput, InferResponse, RequestedOutput

from .errors import BadRequest, QueueFull, ServingError
from .tensors import datatype_of, to_array

log = logging.getLogger("ortgpu.serving")


class ServerBusy(ServerNotReady):
    """The model's queue is full: 503 over REST, UNAVAILABLE over gRPC."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.reason = detail
        self.error_msg = detail


class DecodedRequest:
    """A request reduced to what the runner needs: arrays by input name, requested outputs."""

    def __init__(self, request_id: str | None, feeds: dict[str, np.ndarray],
                 outputs: list[tuple[str, bool | None]] | None, binary_outputs: bool):
        self.id = request_id or str(uuid.uuid4())
        self.feeds = feeds
        self.outputs = outputs            # [(name, binary_data)] or None for all
        self.binary_outputs = binary_outputs


class OrtgpuModel(Model):
    """One version of one repository model; `factory()` builds its ModelRunner (in load())."""

    def __init__(self, name: str, version: int, factory, on_unload=None):
        super().__init__(name)
        self.version = version
        self._factory = factory
        self.runner = None
        self.load_error: str | None = None

    def load(self, retry: bool = False) -> bool:
        """Create the sessions. A failure is kept (not retried per request) and reported as
        not-ready with its reason; `retry` tries again (the repository load endpoint)."""
        if self.ready or (self.load_error and not retry):
            return self.ready
        try:
            self.runner = self._factory()
            self.load_error = None
            self.ready = True
        except (ServingError, Exception) as e:  # noqa: BLE001 - a model that fails to load is not ready
            self.load_error = str(e)
            self.ready = False
            log.error("model %s version %s failed to load: %s", self.name, self.version, e)
        return self.ready

    def stop(self) -> None:
        """Drain the queue and stop the workers (SIGTERM, unload)."""
        if self.runner is not None:
            self.runner.close()
        self.ready = False

    def not_ready_error(self) -> ModelNotReady:
        return ModelNotReady(self.name, self.load_error)

    def get_input_types(self) -> list[dict]:
        return [t.as_metadata() for t in self.runner.inputs] if self.runner else []

    def get_output_types(self) -> list[dict]:
        return [t.as_metadata() for t in self.runner.outputs] if self.runner else []

    def metadata(self) -> dict:
        """The protocol's model metadata object."""
        return {"name": self.name, "versions": [str(self.version)], "platform": "onnxruntime_onnx",
                "inputs": self.get_input_types(), "outputs": self.get_output_types()}

    async def run_decoded(self, req: DecodedRequest) -> InferResponse:
        """Queue a decoded request, wait for its batch, build the response. Cancelling the
        awaiting task (client gone) cancels the queued request."""
        if not self.ready:
            raise self.not_ready_error()
        try:
            future = self.runner.submit(req.feeds)
        except BadRequest as e:
            raise InvalidInput(str(e)) from None
        except QueueFull as e:
            raise ServerBusy(str(e)) from None
        try:
            outputs = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:  # noqa: BLE001 - reported as the protocol's error, no traceback
            log.error("model %s: inference failed: %s", self.name, e, exc_info=True)
            raise InferenceError(f"model {self.name} version {self.version}: {type(e).__name__}: {e}") from None
        return self._response(req, outputs)

    def _response(self, req: DecodedRequest, outputs: list[np.ndarray]) -> InferResponse:
        by_name = dict(zip(self.runner.output_names, outputs))
        wanted = req.outputs or [(n, None) for n in self.runner.output_names]
        unknown = [n for n, _ in wanted if n not in by_name]
        if unknown:
            raise InvalidInput(f"unknown output {unknown[0]!r}: the model's outputs are {self.runner.output_names}")
        infer_outputs = []
        for name, _ in wanted:
            value = np.asarray(by_name[name])
            infer_outputs.append(InferOutput(name=name, shape=list(value.shape), datatype=datatype_of(value),
                                             data=value))
        requested = [RequestedOutput(n, {"binary_data": bool(b if b is not None else req.binary_outputs)})
                     for n, b in wanted] if req.outputs else None
        return InferResponse(response_id=req.id, model_name=self.name, model_version=str(self.version),
                             infer_outputs=infer_outputs, use_binary_outputs=req.binary_outputs,
                             requested_outputs=requested)

    async def predict(self, payload, headers=None, response_headers=None):
        """KServe's entry point (DataPlane.infer, Ray Serve): an InferRequest in, InferResponse out."""
        return await self.run_decoded(decode_infer_request(payload))


def decode_infer_request(payload) -> DecodedRequest:
    """A ``kserve.InferRequest`` (already parsed by KServe) to a DecodedRequest."""
    feeds = {}
    for inp in payload.inputs:
        raw = getattr(inp, "_raw_data", None)
        feeds[inp.name] = _array(inp.name, inp.datatype, inp.shape, None if raw is not None else inp.data, raw)
    outputs = [(o.name, o.binary_data) for o in payload.request_outputs] if payload.request_outputs else None
    return DecodedRequest(payload.id, feeds, outputs, bool(payload.use_binary_outputs))


def decode_rest_body(body: bytes, header_length: str | None) -> DecodedRequest:
    """The REST inference body: JSON, or JSON followed by binary tensor data when the
    ``Inference-Header-Content-Length`` header is present (Triton's binary extension)."""
    import orjson
    json_end = len(body)
    if header_length is not None:
        try:
            json_end = int(header_length)
        except ValueError:
            raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} is not an integer") from None
        if not 0 < json_end <= len(body):
            raise InvalidInput(f"Inference-Header-Content-Length {json_end} outside the body's {len(body)} bytes")
    try:
        doc = orjson.loads(body[:json_end])
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"malformed JSON in the inference request: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise InvalidInput("the inference request must be a JSON object with an 'inputs' list")
    feeds, offset = {}, json_end
    for i, spec in enumerate(doc["inputs"]):
        name, datatype, shape = _input_fields(spec, i)
        params = spec.get("parameters") or {}
        if "data" in spec:
            feeds[name] = _array(name, datatype, shape, spec["data"], None)
        elif isinstance(params, dict) and "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise InvalidInput(f"input {name}: binary_data_size {size!r} runs past the {len(body) - json_end} "
                                   "bytes of binary data in the request")
            feeds[name] = _array(name, datatype, shape, None, body[offset:offset + size])
            offset += size
        else:
            raise InvalidInput(f"input {name}: neither 'data' nor a 'binary_data_size' parameter")
        if name in feeds and sum(1 for s in doc["inputs"] if isinstance(s, dict) and s.get("name") == name) > 1:
            raise InvalidInput(f"input {name} appears more than once")
    outputs = _requested_outputs(doc.get("outputs"))
    params = doc.get("parameters") or {}
    binary = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    rid = doc.get("id")
    return DecodedRequest(str(rid) if rid is not None else None, feeds, outputs, binary)


def _input_fields(spec, i: int):
    if not isinstance(spec, dict):
        raise InvalidInput(f"inputs[{i}] must be a JSON object")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{i}]: 'name' must be a string")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input {name}: 'datatype' must be a string")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInput(f"input {name}: 'shape' must be a list of integers, got {shape!r}")
    return name, datatype, tuple(shape)


def _requested_outputs(outputs):
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise InvalidInput("'outputs' must be a list of objects with a 'name'")
    return [(o["name"], (o.get("parameters") or {}).get("binary_data")) for o in outputs]


def decode_grpc_request(request) -> DecodedRequest:
    """A gRPC ``ModelInferRequest`` to a DecodedRequest (typed contents or raw_input_contents)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(request.inputs)} inputs but {len(raw)} raw_input_contents")
    feeds = {}
    for i, inp in enumerate(request.inputs):
        shape = tuple(int(d) for d in inp.shape)
        if raw:
            feeds[inp.name] = _array(inp.name, inp.datatype, shape, None, raw[i])
        else:
            feeds[inp.name] = _array(inp.name, inp.datatype, shape, _grpc_contents(inp), None)
    outputs = [(o.name, None) for o in request.outputs] or None
    return DecodedRequest(request.id or None, feeds, outputs, True)


_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _grpc_contents(inp):
    field = _CONTENTS.get(inp.datatype)
    if field is None:
        raise InvalidInput(f"input {inp.name}: datatype {inp.datatype!r} cannot be sent as typed contents "
                           f"(expected one of {sorted(_CONTENTS)}; FP16/BF16 go in raw_input_contents)")
    return list(getattr(inp.contents, field))


def _array(name, datatype, shape, data, raw) -> np.ndarray:
    try:
        return to_array(name, datatype, tuple(shape), data, raw)
    except BadRequest as e:
        raise InvalidInput(str(e)) from None
    except ValueError as e:  # reshape of inconsistent nested lists
        raise InvalidInput(f"input {name}: {e}") from None
