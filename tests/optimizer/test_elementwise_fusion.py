"""ElementwiseChainFusion: element-wise DAGs on a device provider become one FusedElementwise
node whose outputs equal onnxruntime's on the original graph; near-misses stay apart; the
CPU provider never fuses; the fused op's function body is valid ONNX that computes the same.

The device is the test double (tests/support/device_double.py): the fused node runs the shared
kernel there, on arrays that refuse silent host conversion."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.errors import InvalidGraph
from support.device_double import providers as double_providers
from ortgpu import fused_ops
from ortgpu.graph import from_proto
from ortgpu.optimizer import pattern_fusions
from ortgpu.optimizer.elementwise_fusion import conflicting, fuse_elementwise_chains, provably_smaller
from ortgpu.providers.cuda import CUDAExecutionProvider
from ortgpu.providers.kernels import fused_elementwise as fe

ort = pytest.importorskip("onnxruntime")

# The pattern fusions (GELU, BiasGelu, ...) would take these graphs first: off, to see this pass.
ALONE = pattern_fusions()

F32, F16, F64, BOOL = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BOOL
NP = {F32: np.float32, F16: np.float16, F64: np.float64, BOOL: np.bool_}


def const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def make_model(nodes, inputs, outputs, inits=(), opset=17):
    """inputs/outputs: [(name, elem, shape)]; output shapes may be None."""
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def feeds_for(model, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 3 for d in tt.shape.dim]
        dt = NP[tt.elem_type]
        out[vi.name] = rng.random(shape) > 0.5 if dt is np.bool_ else (rng.standard_normal(shape) * 2).astype(dt)
    return out


def ops_of(sess):
    return [op for _, op, _ in sess.get_provider_assignment() if not op.startswith("Memcpy")]


def run_fused(model, **kw):
    """(session on the double, its outputs, onnxruntime's outputs) for random feeds."""
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=double_providers(),
                                   **{"disabled_optimizers": ALONE, **kw})
    feeds = feeds_for(model)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    return sess, sess.run(None, feeds), ref


def assert_close(got, ref, dtype):
    tol = {np.float16: (2e-3, 2e-3), np.float32: (2e-6, 1e-6), np.float64: (1e-12, 1e-12)}.get(dtype, (0, 0))
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=tol[0], atol=tol[1])


# ---------------------------------------------------------------- patterns that fuse

def gelu_erf(elem=F32):
    dt = NP[elem]
    nodes = [helper.make_node("Add", ["x", "bias"], ["a"]),
             helper.make_node("Div", ["a", "sqrt2"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["f"]),
             helper.make_node("Mul", ["a", "f"], ["g"]),
             helper.make_node("Mul", ["g", "half"], ["y"])]
    inits = [const("bias", np.linspace(-1, 1, 8), dt), const("sqrt2", 1.4142135, dt),
             const("one", 1.0, dt), const("half", 0.5, dt)]
    return make_model(nodes, [("x", elem, ["N", 8])], [("y", elem, None)], inits)


def swish_with_cast_fp16():
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=F16),
             helper.make_node("Sigmoid", ["h"], ["s"]),
             helper.make_node("Mul", ["h", "s"], ["m"]),
             helper.make_node("Cast", ["m"], ["y"], to=F32)]
    return make_model(nodes, [("x", F32, [2, 3, 5])], [("y", F32, None)])


def masked_scores():
    nodes = [helper.make_node("Mul", ["s", "scale"], ["a"]),
             helper.make_node("Less", ["m", "zero"], ["neg"]),
             helper.make_node("Not", ["neg"], ["keep"]),
             helper.make_node("Where", ["keep", "a", "ninf"], ["w"]),
             helper.make_node("Exp", ["w"], ["y"])]
    inits = [const("scale", 0.125), const("zero", 0.0), const("ninf", -np.inf)]
    return make_model(nodes, [("s", F32, [2, 4, 4]), ("m", F32, [2, 1, 4])], [("y", F32, None)], inits)


def activations(opset=17):
    nodes = [helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.2),
             helper.make_node("HardSigmoid", ["a"], ["b"], alpha=0.3, beta=0.4),
             helper.make_node("Pow", ["b", "three"], ["c"]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["d"]),
             helper.make_node("Max", ["d", "x", "z"], ["e"]),
             helper.make_node("Softplus", ["e"], ["f"]),
             helper.make_node("Sqrt", ["f"], ["g"]),
             helper.make_node("Reciprocal", ["g"], ["y"])]
    inits = [const("three", 3, np.int64), const("lo", 0.01), const("hi", 0.9)]
    return make_model(nodes, [("x", F32, [4, 6]), ("z", F32, [6])], [("y", F32, None)], inits, opset)


def double_chain():
    nodes = [helper.make_node("Tanh", ["x"], ["a"]),
             helper.make_node("Sub", ["a", "x"], ["b"]),
             helper.make_node("Abs", ["b"], ["c"]),
             helper.make_node("Log", ["c"], ["y"])]
    return make_model(nodes, [("x", F64, [5, 7])], [("y", F64, None)])


@pytest.mark.parametrize("build, dtype, fused_inputs", [
    (lambda: gelu_erf(F32), np.float32, [2]),
    (lambda: gelu_erf(F16), np.float16, [2]),
    (swish_with_cast_fp16, np.float16, [1]),   # float32 out, float16 inside
    (masked_scores, np.float32, [1, 2]),        # the [2,1,4] mask is a region of its own
    (activations, np.float32, [2]),
    (double_chain, np.float64, [1]),
], ids=["gelu_erf_f32", "gelu_erf_f16", "swish_cast_f16", "masked_scores", "activations", "f64_chain"])
def test_region_becomes_one_node_with_the_same_outputs(build, dtype, fused_inputs):
    model = build()
    sess, got, ref = run_fused(model)
    assert ops_of(sess) == ["FusedElementwise"] * len(fused_inputs)
    assert sess._optimizations["ElementwiseChainFusion"] == len(fused_inputs)
    assert [len(n.inputs) for n in sess._core.plan.graph.nodes] == fused_inputs
    assert_close(got, ref, dtype)


def test_program_embeds_scalar_constants_and_fills_attribute_defaults():
    sess, _, _ = run_fused(activations())
    program = fe.parse(sess._core.plan.graph.nodes[0].attrs["program"])
    assert [op.op_type for op in program.ops] == ["LeakyRelu", "HardSigmoid", "Pow", "Clip", "Max",
                                                 "Softplus", "Sqrt", "Reciprocal"]
    assert program.consts == ((3.0, "int64"), (0.01, "float32"), (0.9, "float32")) or \
        [t for _, t in program.consts] == ["int64", "float32", "float32"]
    assert program.ops[0].attr_dict == {"alpha": pytest.approx(0.2)}
    assert program.inputs == ("float32", "float32")


def test_two_separate_chains_make_two_nodes():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["b"]),
             helper.make_node("Softmax", ["b"], ["s"], axis=-1),
             helper.make_node("Exp", ["s"], ["c"]), helper.make_node("Sigmoid", ["c"], ["y"])]
    model = make_model(nodes, [("x", F32, [3, 4])], [("y", F32, None)])
    sess, got, ref = run_fused(model)
    assert ops_of(sess) == ["FusedElementwise", "Softmax", "FusedElementwise"]
    assert_close(got, ref, np.float32)


# ---------------------------------------------------------------- near-misses

def _chain_with(extra_output=False, shared=False):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Exp", ["a"], ["b"]),
             helper.make_node("Neg", ["b"], ["y"])]
    outputs = [("y", F32, None)]
    if extra_output:
        outputs.append(("a", F32, None))
    if shared:
        nodes.append(helper.make_node("ReduceSum", ["a"], ["r"], keepdims=0))
        outputs.append(("r", F32, None))
    return make_model(nodes, [("x", F32, [3, 4])], outputs)


@pytest.mark.parametrize("kw", [dict(extra_output=True), dict(shared=True)],
                         ids=["intermediate_is_graph_output", "intermediate_used_outside"])
def test_a_value_needed_outside_stays_a_boundary(kw):
    sess, got, ref = run_fused(_chain_with(**kw))
    ops = ops_of(sess)
    assert ops.count("Relu") == 1 and ops.count("FusedElementwise") == 1, ops
    assert_close(got, ref, np.float32)


def test_non_elementwise_node_in_between_splits_and_single_ops_stay():
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Transpose", ["a"], ["t"], perm=[1, 0]),
             helper.make_node("Exp", ["t"], ["y"])]
    sess, got, ref = run_fused(make_model(nodes, [("x", F32, [3, 4])], [("y", F32, None)]))
    assert ops_of(sess) == ["Relu", "Transpose", "Exp"]
    assert_close(got, ref, np.float32)


def test_conflicting_shapes_do_not_fuse_and_unknown_ones_do():
    nodes = [helper.make_node("Add", ["x", "z"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    bad = make_model(nodes, [("x", F32, [3, 4]), ("z", F32, [2, 4])], [("y", F32, None)])
    with pytest.raises(ortgpu.errors.Fail, match="Incompatible dimensions"):  # as onnxruntime, at load
        ortgpu.InferenceSession(bad.SerializeToString(), providers=double_providers(), disabled_optimizers=ALONE)
    named = make_model(nodes, [("x", F32, ["N", 4]), ("z", F32, ["M", 4])], [("y", F32, None)])
    sess = ortgpu.InferenceSession(named.SerializeToString(), providers=double_providers(),
                                   disabled_optimizers=ALONE)
    assert ops_of(sess) == ["FusedElementwise"]   # checked when it runs, as the ops would be
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x, "z": -x[:1]})[0], np.zeros((3, 4), np.float32))
    with pytest.raises(Exception, match="broadcast"):
        sess.run(None, {"x": x, "z": x[:2]})


def test_smaller_intermediate_is_not_recomputed_per_element():
    nodes = [helper.make_node("Erf", ["b"], ["eb"]), helper.make_node("Exp", ["eb"], ["e2"]),
             helper.make_node("Add", ["x", "e2"], ["a"]), helper.make_node("Tanh", ["a"], ["y"])]
    model = make_model(nodes, [("x", F32, [5, 4]), ("b", F32, [4])], [("y", F32, None)])
    sess, got, ref = run_fused(model)
    assert ops_of(sess) == ["FusedElementwise", "FusedElementwise"]
    sizes = sorted(len(fe.parse(n.attrs["program"]).ops) for n in sess._core.plan.graph.nodes)
    assert sizes == [2, 2]
    assert_close(got, ref, np.float32)


def test_integer_chain_and_cpu_provider_and_disabled_pass_do_not_fuse():
    nodes = [helper.make_node("Add", ["i", "i"], ["a"]), helper.make_node("Mul", ["a", "i"], ["y"])]
    ints = make_model(nodes, [("i", TensorProto.INT64, [4])], [("y", TensorProto.INT64, None)])
    assert ops_of(ortgpu.InferenceSession(ints.SerializeToString(), providers=double_providers())) == ["Add", "Mul"]
    model = gelu_erf()
    cpu = ortgpu.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert "FusedElementwise" not in ops_of(cpu) and cpu._optimizations.get("ElementwiseChainFusion", 0) == 0
    off = ortgpu.InferenceSession(model.SerializeToString(), providers=double_providers(),
                                  disabled_optimizers=["ElementwiseChainFusion"])
    assert "FusedElementwise" not in ops_of(off)


def test_cuda_provider_owns_the_fused_node_without_a_device():
    """With the CUDA provider first (options only, no device needed), the pass fuses and the
    fused node would run on CUDA; a CPU-only list leaves the graph alone."""
    model = onnx.shape_inference.infer_shapes(gelu_erf())
    g = from_proto(model.graph, {"": 17})
    cpu = ortgpu.providers.cpu.CPUExecutionProvider()
    assert fuse_elementwise_chains(g, [cpu], set()) == 0 and len(g.nodes) == 6
    cuda = CUDAExecutionProvider(device_count=None)
    assert fuse_elementwise_chains(g, [cuda, cpu], set()) == 1
    (node,) = g.nodes
    k = cuda.kernel_for(node.op_type, node.domain, node.opset)
    assert k is not None and k.provider == "cuda" and g.opsets["ortgpu"] == 1


# ---------------------------------------------------------------- function body and checks

def _fused_model(model):
    """The optimized graph of `model` as a ModelProto whose fused nodes call their bodies."""
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=double_providers(),
                                   disabled_optimizers=ALONE)
    g = sess._core.plan.graph
    nodes, functions = [], {}
    opset = g.opsets[""]
    for n in g.nodes:
        if n.domain == fe.DOMAIN:
            fp = fused_ops.FUNCTIONS[n.op_type](n, opset)
            functions[(fp.name, fp.overload)] = fp
            p = helper.make_node(n.op_type, n.inputs, n.outputs, domain=fe.DOMAIN, program=n.attrs["program"])
            p.overload = fp.overload
            nodes.append(p)
        else:
            nodes.append(n.proto)
    inits = [numpy_helper.from_array(v, k) for k, v in g.initializers.items()]
    inferred = onnx.shape_inference.infer_shapes(model).graph
    graph = helper.make_graph(nodes, "fused", list(inferred.input), list(inferred.output), inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid(fe.DOMAIN, 1)],
                             functions=list(functions.values()), ir_version=10)


@pytest.mark.parametrize("build, dtype", [(gelu_erf, np.float32), (masked_scores, np.float32),
                                          (activations, np.float32), (swish_with_cast_fp16, np.float16)],
                         ids=["gelu_erf", "masked_scores", "activations", "swish_cast_f16"])
def test_function_body_is_valid_onnx_and_computes_the_same(build, dtype):
    """The bodies (one function overload per program) pass the checker; onnxruntime runs the
    model with them, and so does onnx's inliner.  (onnx's ReferenceEvaluator ignores
    overloads, so it cannot run a model with two different programs.)"""
    model = build()
    fused = _fused_model(model)
    onnx.checker.check_model(fused, full_check=True)
    assert not {t.name for t in fused.graph.initializer} & {"one", "half", "sqrt2", "scale", "ninf", "three"}
    feeds = feeds_for(model)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for m in (fused, onnx.inliner.inline_local_functions(fused)):
        got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        assert_close(got, want, dtype)


def test_malformed_program_is_a_typed_error_naming_the_node():
    node = helper.make_node("FusedElementwise", ["x"], ["y"], domain=fe.DOMAIN, name="bad",
                            program='{"opset":17,"inputs":["float32"],"consts":[],"ops":[["Relu",["t3"],{},"float32"]]}')
    model = helper.make_model(helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F32, [2])],
                                                [helper.make_tensor_value_info("y", F32, [2])]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(fe.DOMAIN, 1)])
    with pytest.raises(InvalidGraph, match="'bad'.*'t3'"):
        ortgpu.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_shape_facts():
    assert conflicting([(3, 4), (2, 4)]) and conflicting([(None, 2, 3), (4, 3)])
    assert not conflicting([("N", 4), ("M", 4)]) and not conflicting([(3, 1), (1, 4), None])
    assert provably_smaller((4,), ("N", 4)) and provably_smaller((1, 4), (3, 4))
    assert not provably_smaller((None, 4), (3, 4)) and not provably_smaller(None, (3, 4))
    assert not provably_smaller(("N", 4), ("N", 4))


def test_logic_on_bool_inputs_alone_is_left_to_the_partitioner():
    nodes = [helper.make_node("Not", ["b"], ["n"]), helper.make_node("Not", ["n"], ["y"])]
    model = make_model(nodes, [("b", BOOL, [4])], [("y", BOOL, None)])
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=double_providers(),
                                   disabled_optimizers=ALONE)
    assert ops_of(sess) == ["Not", "Not"]
