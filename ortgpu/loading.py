"""From a path, bytes or ModelProto to a checked, shape-inferred ModelProto.

Every failure becomes the error onnxruntime raises for it (NoSuchFile, InvalidProtobuf,
InvalidArgument, InvalidGraph, Fail), never a traceback from deep inside onnx.
"""
from __future__ import annotations

import os

import onnx
import onnx.defs
import onnx.inliner
import onnx.shape_inference
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ortgpu import external_initializers
from ortgpu.errors import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile
from ortgpu.ort_format import refuse_ort_format

_SHAPE_INFERENCE_LIMIT = 1_800_000_000  # bytes: onnx infers in memory up to the 2 GB protobuf limit


def read_model(source) -> tuple[onnx.ModelProto, str, str]:
    """Parse the model: (model, folder that external data is relative to, description of source)."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        _require_graph(model)
        return model, os.getcwd(), "model_loading_proto"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(bytes(source), None), os.getcwd(), "model_loading_array"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not os.path.exists(path):
            raise NoSuchFile(f"Load model from {path} failed:Load model {path} failed. File doesn't exist")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except IsADirectoryError:
            raise InvalidProtobuf(f"Load model from {path} failed:Protobuf parsing failed.") from None
        except OSError as e:
            raise Fail(f"Load model from {path} failed:{e.strerror}") from None
        return _parse(data, path), os.path.dirname(os.path.abspath(path)), "model_loading_uri"
    raise TypeError(f"Unable to load from type '{type(source)}'")


def _parse(data: bytes, path: str | None) -> onnx.ModelProto:
    """Parse serialized bytes; messages as onnxruntime words them for a path and for bytes."""
    refuse_ort_format(data, path)  # onnxruntime's .ort FlatBuffer: say so, not "protobuf parsing failed"
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        if path is None:
            raise InvalidProtobuf(f"Failed to load model because protobuf parsing failed. ({e})") from None
        raise InvalidProtobuf(f"Load model from {path} failed:Protobuf parsing failed. ({e})") from None
    _require_graph(model)
    return model


def _require_graph(model: onnx.ModelProto) -> None:
    if not model.HasField("graph"):
        raise InvalidArgument("No graph was found in the protobuf.")


def check_versions(model: onnx.ModelProto) -> None:
    """IR version and opset imports, as onnxruntime checks them (any IR up to the newest onnx
    knows; at least one opset import; an ai.onnx opset this onnx build defines)."""
    if model.ir_version > onnx.IR_VERSION:
        raise Fail(f"Unsupported model IR version: {model.ir_version}, "
                   f"max supported IR version: {onnx.IR_VERSION}")
    if not model.opset_import:
        raise Fail("Missing opset in the model. All ModelProtos MUST have at least one entry that "
                   "specifies which version of the ONNX OperatorSet is being imported.")
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > newest:
            raise Fail(f"Opset {imp.version} of domain ai.onnx is newer than the newest this build "
                       f"knows ({newest}, from onnx {onnx.__version__})")
        if imp.domain in ("", "ai.onnx") and imp.version < 1:
            raise Fail(f"Invalid opset version {imp.version} for domain ai.onnx")


def check_structure(graph: onnx.GraphProto) -> None:
    """The main graph's data flow, with onnxruntime's error classes and wording: a node input
    nothing defines is InvalidArgument, a cycle is Fail.  (Subgraphs are checked when built.)"""
    defined = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    defined |= {sp.values.name for sp in graph.sparse_initializer}
    producer = {}
    for i, n in enumerate(graph.node):
        for o in n.output:
            if o:
                producer[o] = i
    indeg = [0] * len(graph.node)
    users: list[list[int]] = [[] for _ in graph.node]
    for i, n in enumerate(graph.node):
        for x in n.input:
            if not x:
                continue
            if x in producer:
                indeg[i] += 1
                users[producer[x]].append(i)
            elif x not in defined:
                raise InvalidArgument(f"Invalid model. Node input '{x}' is not a graph input, initializer, "
                                      f"or output of a previous node.")
    ready = [i for i, d in enumerate(indeg) if d == 0]
    seen = 0
    while ready:
        i = ready.pop()
        seen += 1
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if seen != len(graph.node):
        stuck = [graph.node[i].name or graph.node[i].op_type for i, d in enumerate(indeg) if d > 0]
        raise Fail(f"This is an invalid model. Error: the graph is not acyclic. (nodes on or after the "
                   f"cycle: {stuck[:5]})")


def _all_tensors(model: onnx.ModelProto):
    yield from external_data_helper._get_all_tensors(model)


def load_external_data(model: onnx.ModelProto, base_dir: str) -> None:
    """Read external tensors from files under `base_dir`; refuse paths that leave it."""
    base = os.path.realpath(base_dir)
    for t in _all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if not loc:
            raise Fail(f"Tensor '{t.name}' has external data without a location")
        prefix = f"External data path validation failed for initializer: {t.name}. Error: "
        if os.path.isabs(loc) or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
            raise Fail(f"{prefix}Absolute path not allowed for external data location: \"{loc}\"")
        full = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([full, base]) != base:
            raise Fail(f"{prefix}External data path escapes model directory. External data path: "
                       f"\"{loc}\" resolved path: \"{full}\" allowed directory: \"{base}\"")
        if not os.path.isfile(full):
            raise Fail(f"{prefix}External data path does not exist: \"{full}\"")
        offset = int(info.get("offset", 0) or 0)
        length = info.get("length")
        size = os.path.getsize(full)
        if offset < 0 or offset > size or (length is not None and offset + int(length) > size):
            raise Fail(f"External data of tensor '{t.name}' (offset {offset}, length {length}) "
                       f"lies outside file '{loc}' of {size} bytes")
        with open(full, "rb") as f:
            f.seek(offset)
            t.raw_data = f.read(int(length)) if length is not None else f.read()
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def override_free_dims(model: onnx.ModelProto, by_name: dict, by_denotation: dict) -> None:
    for vi in model.graph.input:
        if vi.type.WhichOneof("value") != "tensor_type":
            continue
        for d in vi.type.tensor_type.shape.dim:
            value = None
            if d.HasField("dim_param") and d.dim_param in by_name:
                value = by_name[d.dim_param]
            elif d.denotation and d.denotation in by_denotation:
                value = by_denotation[d.denotation]
            if value is not None:
                d.ClearField("dim_param")
                d.dim_value = value


def prepare_model(source, by_name=None, by_denotation=None, supplied=None) -> tuple[onnx.ModelProto, str]:
    """read, check versions, resolve external data (`supplied`: name -> value given in memory,
    SessionOptions.add_external_initializers), inline local functions, infer shapes."""
    model, base_dir, kind = read_model(source)
    check_versions(model)
    check_structure(model.graph)
    external_initializers.apply(model, supplied)
    load_external_data(model, base_dir)
    if by_name or by_denotation:
        override_free_dims(model, by_name or {}, by_denotation or {})
    if model.functions:
        model = _inline_functions(model)
    if model.ByteSize() < _SHAPE_INFERENCE_LIMIT:
        named = _dim_params(model.graph)
        try:
            model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False,
                                                      data_prop=True)
        except Exception:
            pass  # shapes are a help, not a requirement: the kernels compute real shapes
        else:
            _forget_invented_dims(model.graph, named)
    return model, kind


def _inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline the model-local functions, except those of fused ortgpu ops that have a kernel
    (an optimized model saved by ortgpu): those stay nodes, their bodies stay functions."""
    from ortgpu.optimizer.fused_functions import kept_on_load  # noqa: PLC0415
    local = {(f.domain, f.name) for f in model.functions}
    keep = [k for k in kept_on_load() if k in local]
    try:
        if keep:
            return onnx.inliner.inline_selected_functions(model, keep, exclude=True)
        return onnx.inliner.inline_local_functions(model)
    except Exception as e:
        raise InvalidGraph(f"Could not inline the model's local functions: {e}") from None


def _dim_params(graph: onnx.GraphProto) -> set[str]:
    names = set()
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.WhichOneof("value") == "tensor_type":
            names.update(d.dim_param for d in vi.type.tensor_type.shape.dim if d.dim_param)
    return names


def _forget_invented_dims(graph: onnx.GraphProto, named: set[str]) -> None:
    """onnx's inference names unknown dims 'unk__0', ...; onnxruntime reports them as unknown."""
    for vi in list(graph.output) + list(graph.value_info):
        if vi.type.WhichOneof("value") != "tensor_type":
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param.startswith("unk__") and d.dim_param not in named:
                d.ClearField("dim_param")
