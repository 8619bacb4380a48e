"""From a path, bytes or ModelProto to a checked, shape-inferred ModelProto.

Every failure becomes an onnxruntime-style error: NoSuchFile, InvalidProtobuf,
InvalidGraph, Fail (external data), never a traceback from deep inside onnx.
"""
from __future__ import annotations

import os

import onnx
import onnx.defs
import onnx.inliner
import onnx.shape_inference
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ortgpu.errors import Fail, InvalidGraph, InvalidProtobuf, NoSuchFile

MIN_IR_VERSION = 3
_SHAPE_INFERENCE_LIMIT = 1_800_000_000  # bytes: onnx infers in memory up to the 2 GB protobuf limit


def read_model(source) -> tuple[onnx.ModelProto, str, str]:
    """Parse the model: (model, folder that external data is relative to, description of source)."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        return model, os.getcwd(), "model_loading_proto"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(bytes(source), "<bytes>"), os.getcwd(), "model_loading_array"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise NoSuchFile(f"Load model from {path} failed:Load model {path} failed. File doesn't exist")
        with open(path, "rb") as f:
            data = f.read()
        return _parse(data, path), os.path.dirname(os.path.abspath(path)), "model_loading_uri"
    raise TypeError(f"Unable to load from type '{type(source)}'")


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise InvalidProtobuf(f"Load model from {where} failed:Protobuf parsing failed. ({e})") from None
    if not model.HasField("graph") and not data:
        raise InvalidProtobuf(f"Load model from {where} failed:Protobuf parsing failed. (empty input)")
    if not model.HasField("graph"):
        raise InvalidGraph(f"Load model from {where} failed: the model has no graph")
    return model


def check_versions(model: onnx.ModelProto) -> None:
    if model.ir_version < MIN_IR_VERSION:
        raise InvalidGraph(f"Unsupported model IR version: {model.ir_version}, "
                           f"the minimum supported IR version is {MIN_IR_VERSION}")
    if model.ir_version > onnx.IR_VERSION:
        raise InvalidGraph(f"Unsupported model IR version: {model.ir_version}, "
                           f"max supported IR version: {onnx.IR_VERSION}")
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > newest:
            raise InvalidGraph(f"Opset {imp.version} of domain ai.onnx is newer than the newest this build "
                               f"knows ({newest}, from onnx {onnx.__version__})")
        if imp.domain in ("", "ai.onnx") and imp.version < 1:
            raise InvalidGraph(f"Invalid opset version {imp.version} for domain ai.onnx")


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
        if os.path.isabs(loc) or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
            raise Fail(f"External data path '{loc}' of tensor '{t.name}' is absolute; "
                       f"it must be relative to the model's folder {base}")
        full = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([full, base]) != base:
            raise Fail(f"External data path '{loc}' of tensor '{t.name}' escapes the model's folder {base}")
        if not os.path.isfile(full):
            raise NoSuchFile(f"External data file '{loc}' of tensor '{t.name}' not found in {base}")
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


def prepare_model(source, by_name=None, by_denotation=None) -> tuple[onnx.ModelProto, str]:
    """read, check versions, resolve external data, inline local functions, infer shapes."""
    model, base_dir, kind = read_model(source)
    check_versions(model)
    load_external_data(model, base_dir)
    if by_name or by_denotation:
        override_free_dims(model, by_name or {}, by_denotation or {})
    if model.functions:
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as e:
            raise InvalidGraph(f"Could not inline the model's local functions: {e}") from None
    if model.ByteSize() < _SHAPE_INFERENCE_LIMIT:
        try:
            model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False,
                                                      data_prop=True)
        except Exception:
            pass  # shapes are a help, not a requirement: the kernels compute real shapes
    return model, kind
