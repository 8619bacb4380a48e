"""NhwcTransformer: regions of float16 convolutions (and the layout-agnostic ops after them)
go channels-last on a provider that asks for it, with transposes only at the region's
boundaries; outputs equal the graph without the pass (shared kernels on the device double);
the NhwcConv function body is valid ONNX that onnxruntime runs to the same result."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.optimizer import pattern_fusions
from support.device_double import CheckedCPUExecutionProvider, FakeDeviceExecutionProvider
from ortgpu import fused_ops
from ortgpu.graph import from_proto
from ortgpu.optimizer.nhwc_transformer import transform_to_nhwc
from ortgpu.providers.cuda import CUDAExecutionProvider
from ortgpu.providers.kernels import nhwc

ort = pytest.importorskip("onnxruntime")
F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT


class NhwcDevice(FakeDeviceExecutionProvider):
    """The device double, claiming cuDNN: it wants convolutions of `types` channels-last."""

    def __init__(self, types=("float16",)):
        super().__init__()
        self.types = frozenset(types)

    def prefers_nhwc(self, node, dtype):
        return dtype in self.types


def sessions(model, types=("float16",), level=None, **kw):
    """(optimized session, session with NhwcTransformer disabled), both on the double."""
    so = ortgpu.SessionOptions()
    if level is not None:
        so.graph_optimization_level = level
    data = model.SerializeToString()
    # the Conv pattern fusions (FusedConv) would take the convs first: off, to see this pass
    alone = pattern_fusions() + list(kw.pop("disabled_optimizers", []))
    on = ortgpu.InferenceSession(data, so, providers=[NhwcDevice(types), CheckedCPUExecutionProvider()],
                                 disabled_optimizers=alone, **kw)
    off = ortgpu.InferenceSession(data, so, providers=[NhwcDevice(types), CheckedCPUExecutionProvider()],
                                  disabled_optimizers=alone + ["NhwcTransformer"])
    return on, off


def ops_of(sess):
    return [op for _, op, _ in sess.get_provider_assignment() if not op.startswith("Memcpy")]


def arr(rng, shape, dtype, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def residual_block(elem=F16, extra_output=False):
    """Conv-Relu-Conv, times a per-channel constant, plus the block input, Relu, MaxPool."""
    dt = np.float16 if elem == F16 else np.float32
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(arr(rng, (8, 8, 3, 3), dt), "W1"),
             numpy_helper.from_array(arr(rng, (8,), dt), "B1"),
             numpy_helper.from_array(arr(rng, (8, 4, 3, 3), dt), "W2"),
             numpy_helper.from_array(arr(rng, (8, 1, 1), dt, 1.0), "scale"),
             numpy_helper.from_array(np.asarray(0.5, dt), "half")]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2"], ["c2"], pads=[1, 1, 1, 1], group=2),
             helper.make_node("Mul", ["c2", "scale"], ["m"]),
             helper.make_node("Add", ["m", "x"], ["a"]),
             helper.make_node("Mul", ["a", "half"], ["h"]),
             helper.make_node("Relu", ["h"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    outputs = [helper.make_tensor_value_info("y", elem, None)]
    if extra_output:
        nodes.append(helper.make_node("GlobalAveragePool", ["c1"], ["g"]))
        outputs += [helper.make_tensor_value_info("g", elem, None), helper.make_tensor_value_info("c1", elem, None)]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", elem, [1, 8, 10, 10])], outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def feed(model, seed=1):
    vi = model.graph.input[0]
    dt = np.float16 if vi.type.tensor_type.elem_type == F16 else np.float32
    shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return {vi.name: arr(np.random.default_rng(seed), shape, dt, 1.0)}


def assert_same(on, off, model):
    x = feed(model)
    got, want = on.run(None, x), off.run(None, x)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        tol = 2e-3 if g.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=tol, atol=tol)


def test_region_goes_nhwc_with_transposes_only_at_its_boundaries():
    model = residual_block()
    on, off = sessions(model, level=ortgpu.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
                       disabled_optimizers=["ElementwiseChainFusion", "ConvMulFusion", "ConvAddFusion"])
    ops = ops_of(on)
    assert ops == ["Transpose", "NhwcConv", "Relu", "NhwcConv", "Mul", "Add", "Mul", "Relu", "Transpose",
                   "MaxPool"], ops
    assert on._optimizations["NhwcTransformer"] == 2
    g = on._core.plan.graph
    assert g.initializers["W1_ohwi"].shape == (8, 3, 3, 8) and g.initializers["scale_nhwc"].shape == (1, 1, 1, 8)
    assert "half_nhwc" not in g.initializers          # a scalar needs no permutation
    assert "W1" not in g.initializers and "scale" not in g.initializers   # replaced, no longer read
    assert_same(on, off, model)


def test_a_value_needed_in_nchw_gets_one_transpose_back():
    model = residual_block(extra_output=True)
    on, off = sessions(model, level=ortgpu.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
                       disabled_optimizers=["ElementwiseChainFusion"])
    ops = ops_of(on)
    assert ops.count("Transpose") == 3, ops   # x in; c1 out (shared by GlobalAveragePool and the output); r2 out
    assert_same(on, off, model)


def test_fused_elementwise_nodes_join_the_region():
    model = residual_block()
    on, off = sessions(model)   # ORT_ENABLE_ALL: the element-wise chain is fused first
    ops = ops_of(on)
    assert ops.count("Transpose") == 2 and ops.count("NhwcConv") == 2 and "FusedElementwise" in ops, ops
    assert_same(on, off, model)


def test_concat_along_channels_is_renumbered():
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(arr(rng, (4, 3, 1, 1), np.float16), "Wa"),
             numpy_helper.from_array(arr(rng, (5, 3, 3, 3), np.float16), "Wb")]
    nodes = [helper.make_node("Conv", ["x", "Wa"], ["a"]),
             helper.make_node("Conv", ["x", "Wb"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "cat", [helper.make_tensor_value_info("x", F16, [2, 3, 6, 7])],
                          [helper.make_tensor_value_info("y", F16, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    on, off = sessions(model)
    assert ops_of(on) == ["Transpose", "NhwcConv", "NhwcConv", "Concat", "Transpose"]
    concat = [n for n in on._core.plan.graph.nodes if n.op_type == "Concat"][0]
    assert concat.attrs["axis"] == 3
    assert_same(on, off, model)


def test_float32_and_providers_that_do_not_ask_are_left_alone():
    on, _ = sessions(residual_block(F32))
    assert "NhwcConv" not in ops_of(on) and on._optimizations.get("NhwcTransformer", 0) == 0
    model = onnx.shape_inference.infer_shapes(residual_block())
    g = from_proto(model.graph, {"": 17})
    cpu = ortgpu.providers.cpu.CPUExecutionProvider()
    cuda = CUDAExecutionProvider({"prefer_nhwc": "0"}, device_count=None)
    assert transform_to_nhwc(g, [cuda, cpu], set()) == 0 and transform_to_nhwc(g, [cpu], set()) == 0


def test_disabled_by_name():
    on, _ = sessions(residual_block(), disabled_optimizers=["NhwcTransformer"])
    assert "NhwcConv" not in ops_of(on)


def test_function_body_is_valid_onnx_and_computes_the_same():
    model = residual_block(F32)
    on, _ = sessions(model, types=("float32",), level=ortgpu.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
                     disabled_optimizers=["ElementwiseChainFusion"])
    g = on._core.plan.graph
    nodes = []
    for n in g.nodes:
        if n.op_type == nhwc.OP_TYPE:
            nodes.append(helper.make_node(n.op_type, n.inputs, n.outputs, domain=nhwc.DOMAIN, **n.attrs))
        elif n.proto is not None:
            nodes.append(n.proto)
        else:
            nodes.append(helper.make_node(n.op_type, n.inputs, n.outputs, **n.attrs))
    fp = fused_ops.FUNCTIONS[nhwc.OP_TYPE](nodes[1], g.opsets[""])
    inferred = onnx.shape_inference.infer_shapes(model).graph
    graph = helper.make_graph(nodes, "nhwc", list(inferred.input), list(inferred.output),
                              [numpy_helper.from_array(v, k) for k, v in g.initializers.items()])
    saved = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(nhwc.DOMAIN, 1)],
                              functions=[fp], ir_version=10)
    onnx.checker.check_model(saved, full_check=True)
    x = feed(model)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)
    for m in (saved, onnx.inliner.inline_local_functions(saved)):
        got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)


def test_cudnn_channels_last_strides_address_nhwc_and_ohwi_memory():
    from ortgpu.providers.cuda.cudnn import layout_strides
    x = np.arange(2 * 5 * 6 * 3).reshape(2, 5, 6, 3)          # N H W C in memory
    st = layout_strides([2, 3, 5, 6], channels_last=True)       # cuDNN's dims: N C H W
    flat = x.ravel()
    for n, c, h, w in np.ndindex(2, 3, 5, 6):
        assert flat[n * st[0] + c * st[1] + h * st[2] + w * st[3]] == x[n, h, w, c]
    assert layout_strides([2, 3, 5, 6], channels_last=False) == [90, 30, 6, 1]


def test_cuda_nhwc_conv_without_cudnn_runs_the_shared_kernel():
    from ortgpu.providers.cuda.cudnn import nhwc_conv_cudnn
    from ortgpu.providers.kernels.conv import conv_float
    from ortgpu.providers.registry import KernelContext
    rng = np.random.default_rng(4)
    x, w, b = arr(rng, (2, 7, 9, 4), np.float32, 1.0), arr(rng, (6, 3, 3, 2), np.float32), arr(rng, (6,), np.float32)
    ctx = KernelContext(np, "CUDAExecutionProvider", "n", nhwc.OP_TYPE, 1)
    got = nhwc_conv_cudnn(ctx, x, w, b, "NOTSET", None, 2, None, [1, 0, 1, 0], [2, 1])
    want = conv_float(ctx, x.transpose(0, 3, 1, 2), w.transpose(0, 3, 1, 2), b, "NOTSET", None, 2, None,
                      [1, 0, 1, 0], [2, 1]).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
