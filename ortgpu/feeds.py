"""What a model takes and gives (ModelIO), and the checks of what a caller feeds it, with
onnxruntime's messages: names, element types, ranks and fixed dimensions.

String tensors: the kernels take NumPy object arrays of ``str``; a feed of ``bytes`` (an object
array holding bytes, or a NumPy ``S`` array) is decoded as UTF-8, other objects become their
``str()``, as onnxruntime converts them.  Sequences: onnxruntime checks each element's element
type only, not the shape the graph declares for the elements."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from ortgpu.devices import kind_of
from ortgpu.dtypes import np_dtype, onnx_code, tensor_type_str, type_str
from ortgpu.errors import InvalidArgument
from ortgpu.values import OrtValue


@dataclasses.dataclass
class ModelIO:
    """A model's graph inputs and outputs as onnxruntime reports and checks them."""
    all_inputs: list        # ValueInfoProtos of every graph input (initializers included)
    inputs: list            # the inputs a caller feeds (not initializers)
    overridable: list       # initializers listed among the inputs (IR >= 4): feedable
    outputs: list           # outputs, with inferred shapes where the graph declares none

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "ModelIO":
        g = model.graph
        init_names = {t.name for t in g.initializer} | {s.values.name for s in g.sparse_initializer}
        inputs = [vi for vi in g.input if vi.name not in init_names]
        # Old IR versions list every initializer among the inputs; those are constants there.
        overridable = [vi for vi in g.input if vi.name in init_names] if model.ir_version >= 4 else []
        inferred = {vi.name: vi for vi in g.value_info}
        outputs = []
        for vi in g.output:
            kind = vi.type.WhichOneof("value")
            has_shape = kind and (kind != "tensor_type" or vi.type.tensor_type.HasField("shape"))
            outputs.append(vi if has_shape or vi.name not in inferred else inferred[vi.name])
        return cls(list(g.input), inputs, overridable, outputs)

    def __post_init__(self):
        self.feedable = {vi.name for vi in self.inputs} | {vi.name for vi in self.overridable}
        self.required = [vi.name for vi in self.inputs if vi.type.WhichOneof("value") != "optional_type"]
        self.input_meta = {vi.name: vi for vi in self.all_inputs}
        self.output_meta = {vi.name: vi for vi in self.outputs}

    def check_feed_names(self, feed: dict) -> None:
        """onnxruntime's order: missing required inputs first (ValueError, from its Python
        layer), then unknown names; each value's type and shape are checked later."""
        missing = [n for n in self.required if n not in feed]
        if missing:
            raise ValueError(f"Required inputs ({missing}) are missing from input feed ({list(feed)}).")
        for name in feed:
            if name not in self.feedable:
                raise InvalidArgument(f"Invalid input name: {name}")


def check_feed(name: str, value, tp: onnx.TypeProto, keep_device: bool = False):
    """`value` as the graph wants it, or InvalidArgument naming the input, expected and actual.
    Tensors become NumPy arrays, unless `keep_device`: then a device array (CuPy, ...) is
    checked by its dtype and shape only and stays where it is."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return _check_tensor(name, value, tp.tensor_type, keep_device)
    if kind == "sequence_type":
        if not isinstance(value, (list, tuple)):
            got = "a tensor" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
            raise InvalidArgument(f"input with name: '{name}' expected to be of type: {_ONNX_TYPE_SEQUENCE} "
                                  f"({type_str(tp)}) but received {got}")
        elem = sequence_element_type(tp)
        return [check_feed(f"{name}[{i}]", v, elem, keep_device) for i, v in enumerate(value)]
    if kind == "optional_type":
        if value is None:
            return None
        return check_feed(name, value, tp.optional_type.elem_type, keep_device)
    return value


# onnxruntime's ONNXType enum value for a sequence, which its message prints.
_ONNX_TYPE_SEQUENCE = 3


def _check_tensor(name: str, value, tt: onnx.TypeProto.Tensor, keep_device: bool = False):
    if isinstance(value, OrtValue):
        value = value._value
    if keep_device and not isinstance(value, np.ndarray) and kind_of(value) is not None:
        check_tensor_meta(name, value.dtype, value.shape, tt)
        return value
    expected = np_dtype(tt.elem_type) if tt.elem_type else None
    if not isinstance(value, np.ndarray):
        if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
            value = value.get()  # a CuPy array: run() feeds go through the host
        elif hasattr(value, "__array__") or isinstance(value, np.generic):
            try:
                value = np.asarray(value)
            except Exception as e:  # noqa: BLE001 - any array-like that refuses conversion
                raise InvalidArgument(f"Input '{name}': cannot convert {type(value).__name__} to a "
                                      f"NumPy array ({e})") from None
        elif isinstance(value, (list, tuple, int, float, bool, str, bytes)):
            want = expected if expected is not None and expected != object else None
            try:
                value = np.asarray(value, dtype=want)
            except (TypeError, ValueError) as e:
                raise InvalidArgument(f"Input '{name}': could not create a {tensor_type_str(tt.elem_type)} "
                                      f"from the given {type(value).__name__} ({e})") from None
        else:
            raise InvalidArgument(f"Input '{name}' must be a numpy array, got {type(value).__name__}")
    if value.dtype.kind in "US" or (expected == object and value.dtype.kind in "OV"):
        value = as_string_array(name, value)
    check_tensor_meta(name, value.dtype, value.shape, tt)
    return value


def check_tensor_meta(name: str, dtype, shape, tt: onnx.TypeProto.Tensor) -> None:
    """The element type, rank and fixed dimensions of a tensor fed as input `name`, against the
    graph's declaration; InvalidArgument with onnxruntime's messages."""
    expected = np_dtype(tt.elem_type) if tt.elem_type else None
    if expected is not None and dtype != expected:
        try:
            actual = tensor_type_str(onnx_code(dtype))
        except TypeError:
            actual = str(dtype)
        raise InvalidArgument(f"Unexpected input data type. Actual: ({actual}) , "
                              f"expected: ({tensor_type_str(tt.elem_type)})")
    if tt.HasField("shape"):
        expected = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                    for d in tt.shape.dim]
        check_dims("input", name, tuple(shape), expected)


def check_dims(kind: str, name: str, got: tuple, expected) -> None:
    """onnxruntime's rank and dimension messages (InvalidArgument) for input or output `name`
    (`kind`): `got` is the tensor's shape, `expected` the wanted dims (None: any size)."""
    if len(expected) != len(got):
        raise InvalidArgument(f"Invalid rank for {kind}: {name} Got: {len(got)} Expected: {len(expected)} "
                              f"Please fix either the inputs/outputs or the model.")
    bad = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected)) if e is not None and g != e]
    if bad:
        lines = "".join(f" index: {i} Got: {g} Expected: {e}\n" for i, g, e in bad)
        raise InvalidArgument(f"Got invalid dimensions for {kind}: {name} for the following indices\n"
                              f"{lines} Please fix either the inputs/outputs or the model.")


def as_string_array(name: str, value: np.ndarray) -> np.ndarray:
    """`value` (a U, S, V or object array fed for a string input) as an object array of str."""
    if value.dtype.kind == "U":
        return value.astype(object)
    if value.dtype.kind == "V":  # raw byte records (np.void), as onnxruntime takes them: bytes
        flat = [bytes(v) for v in value.ravel()]
    else:
        flat = value.ravel().tolist() if value.dtype.kind in "SO" else None
    if flat is None:
        return value  # a numeric array: the type check that follows refuses it
    if value.dtype.kind == "O" and all(type(v) is str for v in flat):
        return value  # the usual case: nothing to convert
    out = []
    for i, v in enumerate(flat):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (bytes, bytearray, np.bytes_)):
            try:
                out.append(bytes(v).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise InvalidArgument(f"Input '{name}': element {i} is bytes that are not valid UTF-8 "
                                      f"({e.reason} at byte {e.start}); a string tensor holds UTF-8 text") from None
        else:
            out.append(str(v))
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr.reshape(value.shape)


def sequence_element_type(tp: onnx.TypeProto) -> onnx.TypeProto:
    """The type each element of a sequence feed is checked against: the declared element type
    without its shape (onnxruntime runs elements of any shape where the ops allow it)."""
    elem = tp.sequence_type.elem_type
    if elem.WhichOneof("value") != "tensor_type" or not elem.tensor_type.HasField("shape"):
        return elem
    loose = onnx.TypeProto()
    loose.CopyFrom(elem)
    loose.tensor_type.ClearField("shape")
    return loose
