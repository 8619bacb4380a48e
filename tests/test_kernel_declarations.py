"""What every kernel registration declares (element types per type constraint, host-read
inputs, capturability), checked against onnx's schemas, and the placement that reads it: a
node whose types a kernel does not declare goes to the next provider, or fails naming it."""
import collections
import dataclasses

import numpy as np
import onnx.defs
import onnx.shape_inference
import pytest
from onnx import TensorProto, helper

import ortgpu
from support.device_double import CheckedCPUExecutionProvider, FakeDeviceExecutionProvider
from ortgpu.dtypes import np_dtype
from ortgpu.errors import NotImplemented
from ortgpu.graph import from_proto
from ortgpu.partition import partition
from ortgpu.providers import dtype_sets
from ortgpu.providers.registry import CUSTOM_FORMALS, SHARED, kernel, registered, schema_for

CUDA = "cuda"


def _element_name(type_str: str):
    """NumPy dtype name of a schema type string's tensor element ("seq(tensor(float))" ->
    "float32"), None for a type NumPy cannot hold or a non-tensor type (maps)."""
    while type_str.startswith(("seq(", "optional(", "sparse_tensor(")):
        type_str = type_str[type_str.index("(") + 1:-1]
    if not type_str.startswith("tensor("):
        return None
    elem = type_str[len("tensor("):-1]
    code = {"float": TensorProto.FLOAT, "double": TensorProto.DOUBLE}.get(elem)
    if code is None:
        code = TensorProto.DataType.Value(elem.upper())
    try:
        return np_dtype(code).name
    except TypeError:
        return None


def _groups():
    """One entry per registration call: (op, domain, provider, fn) -> its KernelDefs."""
    out = collections.defaultdict(list)
    for k in registered():
        out[(k.op_type, k.domain, k.provider, k.fn)].append(k)
    return out


def _schema_types(ks) -> dict[str, set] | None:
    """Type constraint -> element types the schemas of these since-versions allow (union);
    None for an op onnx has no schema for."""
    allowed = collections.defaultdict(set)
    for k in ks:
        schema = schema_for(k.op_type, k.since, k.domain)
        if schema is None:
            return None
        for tc in schema.type_constraints:
            names = {_element_name(t) for t in tc.allowed_type_strs} - {None}
            if any("tensor(" in t for t in tc.allowed_type_strs):
                allowed[tc.type_param_str] |= names
    return allowed


def _label(ks):
    k = ks[0]
    return f"{k.domain or 'ai.onnx'}::{k.op_type}{[x.since for x in ks]} ({k.provider})"


def test_every_registration_declares_each_type_constraint_of_its_schema():
    missing = []
    for ks in _groups().values():
        declared = ks[0].types
        schema = _schema_types(ks)
        if schema is None:  # no onnx schema: the formals its kernel module named, else "*"
            custom = CUSTOM_FORMALS.get((ks[0].domain, ks[0].op_type))
            want = {"*"} if custom is None else set(custom[0]) | set(custom[1])
        else:
            want = set(schema)
        if set(declared) != want:
            missing.append(f"{_label(ks)}: declares {sorted(declared)}, schema has {sorted(want)}")
        for constraint, names in declared.items():
            if not names:
                missing.append(f"{_label(ks)}: '{constraint}' declares no element type")
    assert not missing, "\n".join(missing)


def test_declared_types_are_among_those_the_schema_allows():
    wrong = []
    for ks in _groups().values():
        schema = _schema_types(ks)
        for constraint, names in ks[0].types.items():
            extra = set(names) - (schema[constraint] if schema is not None else dtype_sets.ALL)
            if extra:
                wrong.append(f"{_label(ks)}: '{constraint}' declares {sorted(extra)} beyond the schema")
    assert not wrong, "\n".join(wrong)


def test_cuda_launchers_declare_only_what_cupy_holds():
    """CuPy 14 holds bfloat16 too (CUPY_BF16); nothing else beyond CUPY."""
    wrong = [f"{_label(ks)}: '{c}' declares {sorted(set(n) - dtype_sets.CUPY_BF16)}"
             for ks in _groups().values() if ks[0].provider == CUDA
             for c, n in ks[0].types.items() if set(n) - dtype_sets.CUPY_BF16]
    assert not wrong, "\n".join(wrong)
    bf16 = {ks[0].op_type for ks in _groups().values() if ks[0].provider == CUDA
            for n in ks[0].types.values() if "bfloat16" in n}
    assert {"MatMul", "Gemm", "Add", "Relu", "Softmax", "LayerNormalization", "Cast", "Transpose"} <= bf16


def test_a_registration_without_types_fails_at_import_naming_the_op():
    with pytest.raises(TypeError, match=r"decl\.test::NoTypesOp\(1\).*types= is required"):
        kernel("NoTypesOp", since=1, domain="decl.test")(lambda ctx, x: x)
    with pytest.raises(TypeError, match=r"Relu.*types=\{\} is only for an op whose schema fixes"):
        kernel("Relu", since=14, provider="decl_test", types={})(lambda ctx, x: x)
    with pytest.raises(TypeError, match="maps type constraints"):
        kernel("Relu", since=14, provider="decl_test", types=dtype_sets.FLOAT)(lambda ctx, x: x)
    assert not [k for k in registered() if k.domain == "decl.test" or k.provider == "decl_test"]


def test_sub_byte_and_float8_sets_hold_what_their_names_say():
    assert "float64" not in dtype_sets.SUB_BYTE      # "float6" is a prefix of "float64"
    assert dtype_sets.SUB_BYTE >= {"int4", "uint4", "float4_e2m1fn"}
    assert "float8_e8m0fnu" not in dtype_sets.FLOAT8 and dtype_sets.FLOAT8_E8M0 <= dtype_sets.ALL
    assert dtype_sets.CUPY == dtype_sets.NUMERIC - dtype_sets.BFLOAT16 | dtype_sets.BOOL | dtype_sets.COMPLEX
    assert dtype_sets.describe(dtype_sets.ALL) == "ALL"
    assert dtype_sets.describe(dtype_sets.FLOAT | {"int64"}) == "FLOAT+int64"


# --- the placement reads the declarations -----------------------------------------------------

def _model(node, elem, shape=(2, 3), opset=18):
    x = helper.make_tensor_value_info("x", elem, list(shape))
    y = helper.make_tensor_value_info("y", elem, None)
    g = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


class NarrowDeviceProvider(FakeDeviceExecutionProvider):
    """The device double whose Neg kernel declares float32 only (a launcher narrower than
    the shared kernel), so that float64 nodes must go elsewhere."""

    name = "NarrowDeviceProvider"

    def kernel_for(self, op_type, domain, opset):
        k = super().kernel_for(op_type, domain, opset)
        if k is not None and op_type == "Neg":
            k = dataclasses.replace(k, provider="narrow", types={"T": frozenset({"float32"})})
        return k


def _assignment(sess):
    return [(op, prov) for _, op, prov in sess.get_provider_assignment() if not op.startswith("Memcpy")]


@pytest.mark.parametrize("elem, dtype, expected", [
    (TensorProto.FLOAT, np.float32, "NarrowDeviceProvider"),
    (TensorProto.DOUBLE, np.float64, "CPUExecutionProvider"),
])
def test_a_type_the_kernel_does_not_declare_goes_to_the_next_provider(elem, dtype, expected):
    model = _model(helper.make_node("Neg", ["x"], ["y"], name="neg"), elem)
    sess = ortgpu.InferenceSession(model.SerializeToString(),
                                   providers=[NarrowDeviceProvider(), CheckedCPUExecutionProvider()])
    assert _assignment(sess) == [("Neg", expected)]
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], -x)


def test_with_no_provider_left_the_node_is_not_implemented_by_name():
    """(A session always appends the CPU provider, so the partitioner is asked directly.)"""
    model = onnx.shape_inference.infer_shapes(
        _model(helper.make_node("Neg", ["x"], ["y"], name="the_neg"), TensorProto.DOUBLE))
    with pytest.raises(NotImplemented, match=r"Neg\(13\).*'the_neg'"):
        partition(from_proto(model.graph, {"": 18}), [NarrowDeviceProvider()])
    part = partition(from_proto(model.graph, {"": 18}), [NarrowDeviceProvider(), CheckedCPUExecutionProvider()])
    assert [type(it.provider) for it in part.items if not hasattr(it, "src")] == [CheckedCPUExecutionProvider]


def test_a_schema_valid_type_no_kernel_runs_is_refused_on_every_provider():
    """Col2Im's schema allows bool, but the kernel sums overlapping blocks: not declared, so
    neither the device double nor the CPU takes the node; onnxruntime refuses it too."""
    node = helper.make_node("Col2Im", ["x", "image_shape", "block_shape"], ["y"], name="col2im")
    x = helper.make_tensor_value_info("x", TensorProto.BOOL, [1, 4, 1])
    y = helper.make_tensor_value_info("y", TensorProto.BOOL, None)
    inits = [helper.make_tensor("image_shape", TensorProto.INT64, [2], [2, 2]),
             helper.make_tensor("block_shape", TensorProto.INT64, [2], [2, 2])]
    g = helper.make_graph([node], "g", [x], [y], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    assert "tensor(bool)" in onnx.defs.get_schema("Col2Im", 18).type_constraints[0].allowed_type_strs
    for providers in ([FakeDeviceExecutionProvider(), CheckedCPUExecutionProvider()], ["CPUExecutionProvider"]):
        with pytest.raises(NotImplemented, match="Col2Im.*'col2im'"):
            ortgpu.InferenceSession(model.SerializeToString(), providers=providers)
    ort = pytest.importorskip("onnxruntime")
    with pytest.raises(Exception, match="(?i)not implemented|NOT_IMPLEMENTED"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_the_shared_kernel_and_its_cuda_launcher_read_the_same_inputs_on_the_host():
    shared = {(k.op_type, k.domain, k.since): k for k in registered() if k.provider == SHARED}
    differ = [f"{k.op_type}({k.since}): cuda {k.host_inputs}, shared {shared[key].host_inputs}"
              for k in registered() if k.provider == CUDA
              for key in [(k.op_type, k.domain, k.since)]
              if key in shared and k.host_inputs != shared[key].host_inputs]
    assert not differ, "\n".join(differ)


# --- host inputs: the partitioner reads the chosen kernel's declaration -----------------------

class UndeclaredSliceProvider(FakeDeviceExecutionProvider):
    """The device double whose Slice kernel declares no host inputs."""

    name = "UndeclaredSliceProvider"

    def kernel_for(self, op_type, domain, opset):
        k = super().kernel_for(op_type, domain, opset)
        return dataclasses.replace(k, host_inputs=()) if k is not None and op_type == "Slice" else k


def _slice_graph():
    """y = Slice(x, Abs(s), e): the starts are computed on the device (s is no host shape value)."""
    nodes = [helper.make_node("Abs", ["s"], ["st"]), helper.make_node("Slice", ["x", "st", "e"], ["y"], name="sl")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
                                       helper.make_tensor_value_info("s", TensorProto.INT64, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [helper.make_tensor("e", TensorProto.INT64, [1], [5])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return onnx.shape_inference.infer_shapes(model)


def test_inputs_a_kernel_declares_host_read_arrive_on_the_host():
    model = _slice_graph()
    sl = next(k for k in registered() if k.op_type == "Slice" and k.since == 13 and k.provider == SHARED)
    assert sl.host_inputs == (1, 2, 3, 4)
    for provider, starts_key in ((FakeDeviceExecutionProvider(), ("st", "cpu")), (UndeclaredSliceProvider(), "st")):
        part = partition(from_proto(model.graph, {"": 18}), [provider, CheckedCPUExecutionProvider()])
        placed = next(it for it in part.items if getattr(it, "node", None) is not None and it.node.name == "sl")
        assert placed.provider is provider
        assert placed.in_keys[1] == starts_key   # a host copy only where the kernel declares it
    sess = ortgpu.InferenceSession(model.SerializeToString(),
                                   providers=[FakeDeviceExecutionProvider(), CheckedCPUExecutionProvider()])
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x, "s": np.array([-2], np.int64)})[0], x[2:5])


# --- capturable: the CUDA-graph check reads the placed kernels' declarations -------------------

def _embedding_model():
    table = helper.make_tensor("table", TensorProto.FLOAT, [10, 4], np.arange(40, dtype=np.float32))
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [table])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_kernels_with_host_round_trips_control_flow_or_data_dependent_shapes_are_not_capturable():
    def declared(op, provider, since):
        return next(k for k in registered() if k.op_type == op and k.provider == provider and k.since == since)
    for op, provider, since, why in [("If", SHARED, 21, "control flow"), ("Loop", SHARED, 21, "control flow"),
                                     ("NonZero", SHARED, 13, "output shape"), ("Compress", SHARED, 11, "output shape"),
                                     ("GatherElements", SHARED, 13, "on the host"),
                                     ("RotaryEmbedding", CUDA, 1, "on the host")]:
        k = declared(op, provider, since)
        assert not k.capturable and why in k.not_capturable_because, (op, provider)
    # Resize uploads its tables once per session now (providers/cuda/device_tables.py)
    assert all(declared(op, CUDA, since).capturable for op, since in (("Resize", 19), ("Upsample", 9)))
    assert declared("Relu", CUDA, 14).capturable and declared("MatMul", CUDA, 13).capturable
    # their index flags are read once per run, not in the launcher (issue 12, items 2 and 9)
    assert all(declared(op, CUDA, since).capturable for op, since in (("Gather", 13), ("GatherND", 13),
                                                                        ("ScatterND", 18), ("RoiAlign", 22)))


def _resize_model():
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="nearest")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [scales])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _gather_elements_model():
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], name="ge", axis=1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                        helper.make_tensor_value_info("i", TensorProto.INT64, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def test_cuda_graphs_refuse_a_kernel_that_reads_device_values_on_the_host_naming_the_node():
    from ortgpu.errors import Fail
    from ortgpu.providers.cuda.provider import CUDAExecutionProvider
    cuda = CUDAExecutionProvider({"enable_cuda_graph": "1"}, device_count=None)
    with pytest.raises(Fail, match=r"cannot use the CUDA Graph feature.*GatherElements 'ge' \(it reads device values"):
        ortgpu.InferenceSession(_gather_elements_model().SerializeToString(),
                                providers=[cuda, "CPUExecutionProvider"])
    # Resize uploads its tables once (warm-up runs), so a capture copies nothing: accepted
    cuda = CUDAExecutionProvider({"enable_cuda_graph": "1"}, device_count=None)
    from ortgpu.graph import from_proto
    from ortgpu.graph_capture import capture_partition
    from ortgpu.providers.cpu import CPUExecutionProvider
    part = capture_partition(from_proto(_resize_model().graph, {"": 18}), [cuda, CPUExecutionProvider()], cuda)
    assert [it.node.op_type for it in part.items if getattr(it, "node", None) is not None] == ["Resize"]
    # an embedding Gather passes the check now (its index flag is read once, when the run ends)
    from ortgpu.graph import from_proto
    from ortgpu.graph_capture import capture_partition
    from ortgpu.providers.cpu import CPUExecutionProvider
    cuda = CUDAExecutionProvider({"enable_cuda_graph": "1"}, device_count=None)
    part = capture_partition(from_proto(_embedding_model().graph, {"": 18}), [cuda, CPUExecutionProvider()], cuda)
    assert [it.node.op_type for it in part.items if getattr(it, "node", None) is not None] == ["Gather"]


def test_the_cuda_provider_reads_the_host_only_declaration():
    from ortgpu.providers.cuda import provider as cuda_provider
    p = cuda_provider.CUDAExecutionProvider(device_count=None)
    node = helper.make_node("HannWindow", ["n"], ["w"])
    k = p.kernel_for("HannWindow", "", 17)
    assert k.provider == SHARED and k.host_only
    int64 = helper.make_tensor_type_proto(TensorProto.INT64, [])
    assert not p.accepts(node, k, [int64])
    assert p.accepts(node, dataclasses.replace(k, host_only=""), [int64])
    ml = p.kernel_for("Binarizer", "ai.onnx.ml", 1)
    assert not ml.host_only and cuda_provider.host_only_reason(ml)   # the domain rule
