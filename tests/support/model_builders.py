"""Small ONNX models for the session, feed and loading tests, built with onnx.helper.

Most models use only Identity so that they run whatever other kernels exist yet.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64

# onnxruntime 1.31 runs models up to this IR version and ai.onnx opset.
ORT_MAX_IR = 11


def _ort_version() -> tuple[int, int]:
    try:
        import onnxruntime
    except ImportError:
        return (0, 0)
    return tuple(int(p) for p in onnxruntime.__version__.split(".")[:2])


# The test extras pin the oracle (pyproject.toml); the tests match its behaviour. Older releases
# (the newest for Python 3.10 is older) differ in messages and in what they refuse, so exact
# comparisons run only from 1.31 on; a newer one than the pin fails them with what changed.
ORACLE_PIN = (1, 32)
ORT_IS_ORACLE = _ort_version() >= (1, 31)
ORT_OPSET = 21


def model(nodes, inputs, outputs, initializers=(), opset=ORT_OPSET, ir_version=ORT_MAX_IR,
          extra_opsets=(), functions=(), value_info=(), name="g", **model_fields) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs),
                              initializer=list(initializers), value_info=list(value_info))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(graph, opset_imports=imports, functions=list(functions), **model_fields)
    m.ir_version = ir_version
    return m


def identity(shape=("N", 3), elem=FLOAT, opset=ORT_OPSET, ir_version=ORT_MAX_IR) -> onnx.ModelProto:
    """y = Identity(x), x of `shape` (symbolic dims as str); output shape left to inference."""
    return model([helper.make_node("Identity", ["x"], ["y"], name="id0")],
                 [helper.make_tensor_value_info("x", elem, shape)],
                 [helper.make_tensor_value_info("y", elem, None)], opset=opset, ir_version=ir_version)


def two_inputs_three_outputs() -> onnx.ModelProto:
    """a (float, [2, 'W']) and b (int64, ['B']) -> ya, yb, yc (a copied twice, b once)."""
    nodes = [helper.make_node("Identity", ["a"], ["ya"], name="n_a"),
             helper.make_node("Identity", ["b"], ["yb"], name="n_b"),
             helper.make_node("Identity", ["ya"], ["yc"], name="n_c")]
    return model(nodes,
                 [helper.make_tensor_value_info("a", FLOAT, [2, "W"]),
                  helper.make_tensor_value_info("b", INT64, ["B"])],
                 [helper.make_tensor_value_info("ya", FLOAT, None),
                  helper.make_tensor_value_info("yb", INT64, None),
                  helper.make_tensor_value_info("yc", FLOAT, None)],
                 producer_name="builder", producer_version="7", doc_string="model doc",
                 domain="test.domain", model_version=5)


def with_initializer_input(ir_version: int) -> onnx.ModelProto:
    """x and an initializer w (listed among the graph inputs) -> (Identity(x), Identity(w))."""
    w = numpy_helper.from_array(np.array([1.5, 2.5], np.float32), "w")
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["w"], ["wy"])]
    return model(nodes,
                 [helper.make_tensor_value_info("x", FLOAT, [2]),
                  helper.make_tensor_value_info("w", FLOAT, [2])],
                 [helper.make_tensor_value_info("y", FLOAT, [2]),
                  helper.make_tensor_value_info("wy", FLOAT, [2])],
                 initializers=[w], ir_version=ir_version, opset=9 if ir_version < 4 else ORT_OPSET)


def sequence_identity() -> onnx.ModelProto:
    """A sequence of int64 tensors in, the same sequence out."""
    seq = helper.make_tensor_sequence_value_info
    return model([helper.make_node("Identity", ["s"], ["t"])],
                 [seq("s", INT64, ["L"])], [seq("t", INT64, None)])


def optional_identity() -> onnx.ModelProto:
    """An optional float tensor in and out."""
    opt = helper.make_optional_type_proto(helper.make_tensor_type_proto(FLOAT, [3]))
    return model([helper.make_node("Identity", ["o"], ["p"])],
                 [helper.make_value_info("o", opt)], [helper.make_value_info("p", opt)])


def denoted_identity() -> onnx.ModelProto:
    """x with a free first dim that carries the denotation DATA_BATCH."""
    m = identity(shape=["batch", 4])
    m.graph.input[0].type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    return m


def big_initializer_model() -> onnx.ModelProto:
    """y = Identity(w), w an initializer large enough for onnx to store it externally."""
    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    return model([helper.make_node("Identity", ["w"], ["y"])], [],
                 [helper.make_tensor_value_info("y", FLOAT, [64, 64])], initializers=[w])


def local_function_model() -> onnx.ModelProto:
    """y = Twice(x) where Twice is a model-local function made of two Identity nodes."""
    fn = helper.make_function("local.fn", "Twice", ["a"], ["b"],
                              [helper.make_node("Identity", ["a"], ["t"]),
                               helper.make_node("Identity", ["t"], ["b"])],
                              [helper.make_opsetid("", ORT_OPSET)])
    return model([helper.make_node("Twice", ["x"], ["y"], domain="local.fn")],
                 [helper.make_tensor_value_info("x", FLOAT, [3])],
                 [helper.make_tensor_value_info("y", FLOAT, [3])],
                 extra_opsets=[("local.fn", 1)], functions=[fn])


def outcome(fn):
    """('ok', result) or (exception class name, message without onnxruntime's status prefix)."""
    try:
        return "ok", fn()
    except Exception as e:  # noqa: BLE001 - the class is what the tests compare
        msg = str(e)
        if msg.startswith("[ONNXRuntimeError]"):
            msg = msg.split(" : ", 3)[-1]
        return type(e).__name__, msg


def node_args(args) -> list[tuple]:
    return [(a.name, a.type, a.shape) for a in args]
