"""From a path, bytes or ModelProto to a checked, shape-inferred ModelProto.

Every failure becomes the error onnxruntime raises for it (NoSuchFile, InvalidProtobuf,
InvalidArgument, InvalidGraph, Fail), never a traceback from deep inside onnx.
"""
from __future__ import annotations

import math
import os
import re
import stat

import onnx
import onnx.defs
import onnx.inliner
import onnx.shape_inference
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ortgpu import external_initializers
from ortgpu.errors import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile, NotImplemented  # noqa: A004
from ortgpu.graph import kahn_order
from ortgpu.graph_query import tensor_type
from ortgpu.ort_format import refuse_ort_format

_SHAPE_INFERENCE_LIMIT = 1_800_000_000  # bytes: onnx infers in memory up to the 2 GB protobuf limit
_PROTOBUF_LIMIT = 2**31 - 1  # bytes: protobuf parses no message larger than this
# session config entry naming the folder that external data of a model given as bytes (or as a
# ModelProto) is read from; without it such a model's external data is refused.
EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"


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
        return _parse(_read_file(path), path), os.path.dirname(os.path.abspath(path)), "model_loading_uri"
    raise TypeError(f"Unable to load from type '{type(source)}'")


def _read_file(path: str) -> bytes:
    """The bytes of a model file.  Only a regular file of at most protobuf's 2 GB limit is read,
    and no more than its size: a device, a pipe or /dev/zero would otherwise be read forever."""
    if "\0" in path or not os.path.exists(path):
        raise NoSuchFile(f"Load model from {path} failed:Load model {path} failed. File doesn't exist")
    refused = f"Load model from {path} failed:Protobuf parsing failed."
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise InvalidProtobuf(f"{refused} (not a regular file)")
            if st.st_size > _PROTOBUF_LIMIT:
                raise InvalidProtobuf(f"{refused} (the file has {st.st_size} bytes, more than protobuf's "
                                      f"limit of {_PROTOBUF_LIMIT})")
            return f.read(st.st_size)
    except IsADirectoryError:
        raise InvalidProtobuf(refused) from None
    except OSError as e:
        raise Fail(f"Load model from {path} failed:{e.strerror}") from None


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


def _graphs(graph: onnx.GraphProto):
    """`graph` and every subgraph in it, depth first."""
    yield graph
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _graphs(g)


def _all_graphs(model: onnx.ModelProto):
    yield from _graphs(model.graph)
    for f in model.functions:
        for n in f.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from _graphs(a.g)


def check_names(model: onnx.ModelProto) -> None:
    """Every name a node carries must be valid UTF-8 (protobuf hands invalid text back as bytes,
    which no later step can handle): InvalidGraph naming the node and the field."""
    nodes = [n for g in _all_graphs(model) for n in g.node] + [n for f in model.functions for n in f.node]
    for n in nodes:
        for field in ("name", "op_type", "domain"):
            if isinstance(getattr(n, field), bytes):
                raise InvalidGraph(f"Node {n.op_type!r}: its {field} {getattr(n, field)!r} is not valid UTF-8")
        for field in ("input", "output"):
            for x in getattr(n, field):
                if isinstance(x, bytes):
                    raise InvalidGraph(f"Node '{n.name}' ({n.op_type}): {field} name {x!r} is not valid UTF-8")
        for a in n.attribute:
            if isinstance(a.name, bytes) or isinstance(a.ref_attr_name, bytes):
                raise InvalidGraph(f"Node '{n.name}' ({n.op_type}): attribute name "
                                   f"{a.name if isinstance(a.name, bytes) else a.ref_attr_name!r} "
                                   f"is not valid UTF-8")
    for g in _all_graphs(model):
        for vi in list(g.input) + list(g.output) + list(g.value_info) + list(g.initializer):
            if isinstance(vi.name, bytes):
                raise InvalidGraph(f"Graph '{g.name}': value name {vi.name!r} is not valid UTF-8")


def check_patterns(model: onnx.ModelProto) -> None:
    """RegexFullMatch patterns compile with RE2 at load, as onnxruntime compiles them when it
    creates the kernel: a pattern RE2 refuses fails the session (Fail), not the first run."""
    from ortgpu.providers.kernels.strings import PatternError, compile_pattern  # noqa: PLC0415
    for g in _all_graphs(model):
        for n in g.node:
            if n.op_type != "RegexFullMatch" or n.domain not in ("", "ai.onnx"):
                continue
            for a in n.attribute:
                if a.name == "pattern" and a.type == onnx.AttributeProto.STRING:
                    try:
                        compile_pattern(a.s.decode("utf-8", "surrogateescape"))
                    except PatternError as e:
                        raise Fail(f"Exception during initialization: node '{n.name}': {e}") from None
                    except NotImplementedError as e:  # google-re2 is not installed
                        raise NotImplemented(str(e)) from None


# --- item 12 of issue 18: what onnxruntime refuses when it resolves the graph ------------------
_SCHEMA_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")
# Checker complaints that onnxruntime reports elsewhere (check_ops_registered) or not at all.
_CHECKER_LEAVES = ("deprecated", "No Op registered", "No opset import", "is not a registered function")


def check_node_schemas(model: onnx.ModelProto) -> None:
    """Each node of an onnx domain against its schema, as onnxruntime checks it with onnx's
    checker: attribute names and types, required attributes, input and output counts.
    InvalidGraph with onnxruntime's wording.  Subgraphs are checked node by node (a graph
    attribute is replaced by an empty graph for its node's own check)."""
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = model.ir_version
    ctx.opset_imports = {("" if i.domain == "ai.onnx" else i.domain): i.version for i in model.opset_import}
    lex = onnx.checker.C.LexicalScopeContext()
    for g in _all_graphs(model):
        for n in g.node:
            if n.domain not in _SCHEMA_DOMAINS:
                continue
            try:
                onnx.checker.C.check_node(_without_subgraphs(n).SerializeToString(), ctx, lex)
            except onnx.checker.ValidationError as e:
                msg = str(e).split("==>")[0].strip()
                if any(k in msg for k in _CHECKER_LEAVES):
                    continue
                raise InvalidGraph(f'This is an invalid model. In Node, ("{n.name}", {n.op_type}, "{n.domain}", -1) '
                                   f": Error Node ({n.name}) has {msg}") from None


def _without_subgraphs(n: onnx.NodeProto) -> onnx.NodeProto:
    if not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
        return n
    stub = onnx.NodeProto()
    stub.CopyFrom(n)
    for a in stub.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            a.g.CopyFrom(onnx.GraphProto(name=a.g.name or "subgraph"))
        elif a.type == onnx.AttributeProto.GRAPHS:
            for g in a.graphs:
                g.CopyFrom(onnx.GraphProto(name=g.name or "subgraph"))
    return stub


_ELEM_TYPES = frozenset(v for v in onnx.TensorProto.DataType.values() if v != onnx.TensorProto.UNDEFINED)


def _bad_elem_type(tp: onnx.TypeProto) -> int | None:
    """The first invalid tensor element type in `tp` (also inside sequences, optionals, maps)."""
    kind = tp.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        t = getattr(tp, kind).elem_type
        return None if t in _ELEM_TYPES else t
    if kind == "sequence_type":
        return _bad_elem_type(tp.sequence_type.elem_type)
    if kind == "optional_type":
        return _bad_elem_type(tp.optional_type.elem_type)
    if kind == "map_type":
        return _bad_elem_type(tp.map_type.value_type)
    return None


def check_declared_types(model: onnx.ModelProto) -> None:
    """Declared tensor element types (graph inputs, outputs, value_info) must be types ONNX
    defines: onnxruntime's InvalidArgument ("Invalid tensor data type 0") otherwise."""
    for g in _all_graphs(model):
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            bad = _bad_elem_type(vi.type)
            if bad is not None:
                raise InvalidArgument(f"Failed to load model with error: Invalid tensor data type {bad}. "
                                      f"(value '{vi.name}' of graph '{g.name}')")


def check_duplicate_inputs(model: onnx.ModelProto) -> None:
    """A name listed twice among a graph's inputs: onnxruntime's Fail."""
    for g in _all_graphs(model):
        seen = set()
        for vi in g.input:
            if vi.name in seen:
                raise Fail(f"Error: Duplicate definition-site for ({vi.name}).")
            seen.add(vi.name)


_POOLS = ("MaxPool", "AveragePool", "LpPool")


def check_pool_pads(model: onnx.ModelProto) -> None:
    """Pooling pads must be smaller than the kernel: onnxruntime refuses the kernel (Fail);
    a pad as wide as the window would pool nothing but padding."""
    for g in _all_graphs(model):
        for n in g.node:
            if n.op_type not in _POOLS or n.domain not in ("", "ai.onnx"):
                continue
            attrs = {a.name: list(a.ints) for a in n.attribute if a.type == onnx.AttributeProto.INTS}
            kernel, pads = attrs.get("kernel_shape", []), attrs.get("pads", [])
            if not kernel or len(pads) != 2 * len(kernel):
                continue
            for i, k in enumerate(kernel):
                if pads[i] >= k or pads[i + len(kernel)] >= k:
                    raise Fail(f"Exception during initialization: node '{n.name}' ({n.op_type}): Pad should be "
                               f"smaller than kernel. pads {pads}, kernel_shape {kernel}")


# onnx's strict inference reports these; onnxruntime resolves the same graph without complaint
# (a declared shape that differs from the inferred one is merged, with a warning).
_TOLERATED = ("Inferred shape and existing shape differ", "differ in rank", "dimension mismatch",
              "Can't merge shape info", "Unsupported op", "not registered", "No Op registered",
              "is not a registered function", "Shape inference error(s)", "No opset import",
              "expected to have type but instead is null",  # nodes out of file order
              "sparse_tensor(")  # onnx types a sparse initializer sparse; onnxruntime densifies it
_SUBGRAPH_OPS = ("Loop)", "If)", "Scan)", "SequenceMap)")
_TYPE_ERRORS = ("TypeInferenceError", "has inconsistent type", "has unsupported type",
                "bound to different types", "elem type differs", "type mismatch")


def infer_and_check(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shapes and types inferred by onnx.  Strict inference first: an error onnxruntime would
    also raise (a type conflict, an input type outside the op's constraint, an op's own
    inference refusing its attributes or shapes) fails the load with onnxruntime's class; a
    complaint onnxruntime tolerates is let through.  The strict pass propagates no data
    (onnxruntime's resolution does not read initializers' values); the lenient pass does, for
    the shapes the planner uses."""
    try:
        onnx.shape_inference.infer_shapes(_in_order(_first_declarations(model)), check_type=True,
                                          strict_mode=True, data_prop=False)
    except onnx.shape_inference.InferenceError as e:
        _raise_if_refused(str(e))
    except Exception:  # noqa: BLE001 - anything else from onnx: the lenient pass decides
        pass
    return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)


def _in_order(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, or a copy with its main graph's nodes in topological order (onnx infers in file
    order; onnxruntime sorts first), the file's order kept among independent nodes."""
    g = model.graph
    producer = {o: i for i, n in enumerate(g.node) for o in n.output if o}
    deps = [{producer[x] for x in n.input if x in producer} for n in g.node]
    if all(all(j < i for j in d) for i, d in enumerate(deps)):
        return model
    order, _ = kahn_order(deps)
    if len(order) != len(g.node):
        return model  # a cycle: refused elsewhere
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = [copy.graph.node[i] for i in order]
    sorted_nodes = [onnx.NodeProto() for _ in nodes]
    for dst, src in zip(sorted_nodes, nodes):
        dst.CopyFrom(src)
    del copy.graph.node[:]
    copy.graph.node.extend(sorted_nodes)
    return copy


def _first_declarations(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose declarations hold only what onnxruntime checks a value against:
    the element type of the first declaration of each graph output (not of a graph input or
    initializer listed as an output), and the element types of value_info.  Declared shapes of
    outputs and intermediate values go: onnxruntime merges a conflicting one with a warning,
    where onnx's strict inference would carry it into the next node and fail there."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    g = copy.graph
    seen = {vi.name for vi in g.input} | {t.name for t in g.initializer}
    keep = []
    for o in g.output:
        if o.name not in seen:
            seen.add(o.name)
            keep.append(o)
    del g.output[:]
    g.output.extend(keep)
    for vi in list(g.output) + list(g.value_info):
        if vi.type.WhichOneof("value") == "tensor_type":
            vi.type.tensor_type.ClearField("shape")
    return copy


def _raise_if_refused(message: str) -> None:
    """Raise onnxruntime's error for the first refused complaint in onnx's inference message.
    Complaints from inside a function body (a nested "Inference error(s)" list) are left out:
    onnxruntime checks a function op by its schema, and onnx versions differ in the bodies."""
    for err in [m.strip() for m in re.split(r"\(op_type:", message)[1:]] or [message]:
        if "Inference error(s)" in err:
            if err.startswith(_SUBGRAPH_OPS):
                continue  # a subgraph's errors follow: onnxruntime checks subgraphs too
            break  # a function body's errors follow
        if any(k in err for k in _TOLERATED):
            continue
        text = "(op_type:" + err
        if "has unsupported type" in err:
            raise InvalidGraph(f"This is an invalid model. Type Error: {text}")
        if any(k in err for k in _TYPE_ERRORS):
            raise Fail(f"Type Error: {text}")
        if "ShapeInferenceError" in err:
            raise Fail(f"[ShapeInferenceError] {text}")


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


def external_base(base_dir: str | None, kind: str, config: dict | None) -> str | None:
    """The folder external data is read from: the model file's folder for a path; for bytes or a
    ModelProto only the folder the session config names (None: external data is refused)."""
    if kind == "model_loading_uri":
        return base_dir
    folder = (config or {}).get(EXTERNAL_FOLDER_KEY)
    return folder if folder else None


def load_external_data(model: onnx.ModelProto, base_dir: str | None) -> None:
    """Read external tensors from files under `base_dir`; refuse paths that leave it, and every
    external tensor when `base_dir` is None (a model from bytes with no folder named)."""
    base = os.path.realpath(base_dir) if base_dir is not None else None
    for t in _all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if not loc:
            raise Fail(f"Tensor '{t.name}' has external data without a location")
        prefix = f"External data path validation failed for initializer: {t.name}. Error: "
        if base is None:
            raise Fail(f"{prefix}the model was given as bytes or a ModelProto, so external data \"{loc}\" "
                       f"has no folder to be read from: name one with the session config entry "
                       f"'{EXTERNAL_FOLDER_KEY}'")
        full = _external_path(loc, base, prefix)
        offset = _external_number(info, "offset", t.name, signed=True) or 0
        length = _external_number(info, "length", t.name, signed=False)
        need = _tensor_nbytes(t)
        if length is None:
            length = need
        elif need is not None and length != need:
            raise Fail(f"External data of tensor '{t.name}' has length {length}, but its dims {list(t.dims)} "
                       f"and element type need {need} bytes")
        size = os.path.getsize(full)
        if offset < 0 or offset > size or (length is not None and offset + length > size):
            raise Fail(f"External data of tensor '{t.name}' (offset {offset}, length {length}) "
                       f"lies outside file '{loc}' of {size} bytes")
        with open(full, "rb") as f:
            f.seek(offset)
            t.raw_data = f.read(length) if length is not None else f.read(size - offset)
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT


def _external_path(loc: str, base: str, prefix: str) -> str:
    """The real path of external-data location `loc`, which must be a file inside `base`."""
    if os.path.isabs(loc) or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
        raise Fail(f"{prefix}Absolute path not allowed for external data location: \"{loc}\"")
    if "\0" in loc:  # C++ reads the path up to its NUL byte; no file has such a name
        raise Fail(f"{prefix}External data path does not exist: \"{loc!r}\" (it holds a NUL byte)")
    full = os.path.realpath(os.path.join(base, loc))
    if os.path.commonpath([full, base]) != base:
        raise Fail(f"{prefix}External data path escapes model directory. External data path: "
                   f"\"{loc}\" resolved path: \"{full}\" allowed directory: \"{base}\"")
    if not os.path.isfile(full):
        raise Fail(f"{prefix}External data path does not exist: \"{full}\"")
    return full


_SIGNED = re.compile(r"-?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


def _external_number(info: dict, key: str, tensor: str, signed: bool) -> int | None:
    """An integer field of external data ("offset", "length"), read strictly as onnxruntime reads
    it: decimal digits only (no space, '+', exponent or hex; no '-' for the unsigned length)."""
    text = info.get(key)
    if text is None:
        return None
    if not (_SIGNED if signed else _UNSIGNED).fullmatch(text):
        kind = "a decimal integer" if signed else "a non-negative decimal integer"
        raise Fail(f"External data of tensor '{tensor}': field '{key}' is {text!r}, expected {kind} "
                   f"(Failed to parse value)")
    return int(text)


_SUBBYTE_BITS = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.FLOAT4E2M1: 4}
_SUBBYTE_BITS.update({getattr(onnx.TensorProto, n): 2 for n in ("INT2", "UINT2") if hasattr(onnx.TensorProto, n)})


def _tensor_nbytes(t: onnx.TensorProto) -> int | None:
    """The bytes a tensor's dims and type call for (what onnxruntime reads without a length);
    None for strings and unknown types, which are read to the end of the file."""
    n = math.prod(int(d) for d in t.dims)
    if t.data_type in _SUBBYTE_BITS:
        return (n * _SUBBYTE_BITS[t.data_type] + 7) // 8
    try:
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    except Exception:  # noqa: BLE001 - an unknown data_type is reported where the tensor is read
        return None
    if dt.kind == "O" or n < 0:
        return None
    return n * dt.itemsize


def override_free_dims(model: onnx.ModelProto, by_name: dict, by_denotation: dict) -> None:
    for vi in model.graph.input:
        if tensor_type(vi.type) is None:
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


def prepare_model(source, by_name=None, by_denotation=None, config=None,
                  supplied=None) -> tuple[onnx.ModelProto, str]:
    """read, check versions, resolve external data, inline local functions, infer shapes.
    `config`: the session's config entries (the folder of external data for a model from bytes);
    `supplied`: name -> value of external initializers given in memory
    (SessionOptions.add_external_initializers)."""
    model, base_dir, kind = read_model(source)
    check_names(model)
    check_versions(model)
    check_structure(model.graph)
    check_patterns(model)
    external_initializers.apply(model, supplied)
    load_external_data(model, external_base(base_dir, kind, config))
    if by_name or by_denotation:
        override_free_dims(model, by_name or {}, by_denotation or {})
    if model.functions:
        model = _inline_functions(model)
    check_declared_types(model)
    check_node_schemas(model)
    check_duplicate_inputs(model)
    check_pool_pads(model)
    if model.ByteSize() < _SHAPE_INFERENCE_LIMIT:
        named = _dim_params(model.graph)
        try:
            model = infer_and_check(model)
        except (Fail, InvalidGraph):
            raise
        except Exception:  # noqa: BLE001
            pass  # shapes are a help, not a requirement: the kernels compute real shapes
        else:
            _forget_invented_dims(model.graph, named)
    return model, kind


def _inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline the model-local functions, except those of fused ortgpu ops that have a kernel
    (an optimized model saved by ortgpu): those stay nodes, their bodies stay functions."""
    from ortgpu.fused_ops import kept_on_load  # noqa: PLC0415
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
        if tensor_type(vi.type) is not None:
            names.update(d.dim_param for d in vi.type.tensor_type.shape.dim if d.dim_param)
    return names


def _forget_invented_dims(graph: onnx.GraphProto, named: set[str]) -> None:
    """onnx's inference names unknown dims 'unk__0', ...; onnxruntime reports them as unknown."""
    for vi in list(graph.output) + list(graph.value_info):
        if tensor_type(vi.type) is None:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param.startswith("unk__") and d.dim_param not in named:
                d.ClearField("dim_param")
