"""The partitioner on [device double, CPU]: placement, copies at crossing edges, the shape rule,
subgraphs with outer-scope copies, results equal to the CPU-only session, loud missing copies."""
import logging

import numpy as np
import pytest
from onnx import TensorProto, helper

import ortgpu
from support.device_double import CheckedCPUExecutionProvider, FakeArray, FakeDeviceExecutionProvider
from ortgpu.executor import Plan
from ortgpu.graph import from_proto
from ortgpu.partition import Copy, Placed, partition
from ortgpu.providers.cpu import CPUExecutionProvider

DEV = "FakeDeviceExecutionProvider"
CPU = "CPUExecutionProvider"
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _sessions(model, level=None):
    so = ortgpu.SessionOptions()
    if level is not None:
        so.graph_optimization_level = level
    dev = FakeDeviceExecutionProvider()
    # placement is under test: element-wise fusion would merge the nodes the tests look for
    double = ortgpu.InferenceSession(model.SerializeToString(), so, providers=[dev, CheckedCPUExecutionProvider()],
                                     disabled_optimizers=["ElementwiseChainFusion"])
    cpu = ortgpu.InferenceSession(model.SerializeToString(), so, providers=[CPU])
    return double, dev, cpu


def _copies(plan):
    """[(op type, value, target device)] of the copy steps of a plan (not its subgraphs)."""
    return [(c.op_type, c.value, c.dst) for c in plan.partition.copies()]


def _ops(sess):
    return {(op, prov) for _, op, prov in sess.get_provider_assignment() if not op.startswith("Memcpy")}


def _provider_of(sess, op_type):
    return [prov for _, op, prov in sess.get_provider_assignment() if op == op_type]


def _assert_same(double, cpu, feed):
    for a, b in zip(double.run(None, feed), cpu.run(None, feed)):
        assert isinstance(a, np.ndarray) or isinstance(a, list)
        if isinstance(a, list):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
        else:
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


# --- copies exactly at the crossing edges ---------------------------------------------------


def test_cpu_only_session_has_no_copies():
    model = _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])],
                   [_vi("x", F, [3])], [_vi("y", F, [3])])
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=[CPU])
    assert [op for _, op, _ in sess.get_provider_assignment()] == ["Relu", "Neg"]


def test_graph_on_the_device_copies_only_its_input_and_output():
    model = _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["a"]),
                    helper.make_node("Add", ["a", "r"], ["y"])],
                   [_vi("x", F, [3])], [_vi("y", F, [3])])
    double, dev, cpu = _sessions(model)
    assert _ops(double) == {("Relu", DEV), ("Neg", DEV), ("Add", DEV)}
    assert _copies(double._core.plan) == [("MemcpyFromHost", "x", "fakedev"), ("MemcpyToHost", "y", "cpu")]
    steps = [op for _, op, _ in double.get_provider_assignment()]
    assert steps == ["MemcpyFromHost", "Relu", "Neg", "Add", "MemcpyToHost"]  # copy right before use
    feed = {"x": np.array([-1.0, 0.5, 2.0], np.float32)}
    _assert_same(double, cpu, feed)
    assert (dev.copies_from_host, dev.copies_to_host) == (1, 1)


def test_string_op_in_the_middle_forces_copies_both_ways():
    # Relu (device) -> Cast to string and back (CPU: the double holds no strings) -> Neg (device)
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Cast", ["r"], ["s"], to=TensorProto.STRING),
             helper.make_node("Cast", ["s"], ["f"], to=F),
             helper.make_node("Neg", ["f"], ["n"]),
             helper.make_node("Mul", ["n", "r"], ["y"])]
    model = _model(nodes, [_vi("x", F, [4])], [_vi("y", F, [4])])
    double, dev, cpu = _sessions(model)
    assert _provider_of(double, "Cast") == [CPU, CPU]
    assert _provider_of(double, "Relu") == [DEV] and _provider_of(double, "Neg") == [DEV]
    assert _copies(double._core.plan) == [("MemcpyFromHost", "x", "fakedev"), ("MemcpyToHost", "r", "cpu"),
                                     ("MemcpyFromHost", "f", "fakedev"), ("MemcpyToHost", "y", "cpu")]
    _assert_same(double, cpu, {"x": np.array([-1.5, 0.25, 2.0, 3.0], np.float32)})


def test_host_only_kernel_in_the_middle_and_one_copy_per_value_and_device():
    # Unique has only a host kernel (provider="cpu"); r is read by it and by two device nodes
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Unique", ["r"], ["u"], sorted=1),
             helper.make_node("Neg", ["u"], ["nu"]),
             helper.make_node("Abs", ["nu"], ["y1"]),
             helper.make_node("Exp", ["r"], ["e"]),
             helper.make_node("Sqrt", ["r"], ["q"]),
             helper.make_node("Add", ["e", "q"], ["y2"])]
    model = _model(nodes, [_vi("x", F, [6])], [_vi("y1", F, None), _vi("y2", F, [6])])
    double, dev, cpu = _sessions(model)
    assert _provider_of(double, "Unique") == [CPU]
    copies = _copies(double._core.plan)
    assert copies.count(("MemcpyToHost", "r", "cpu")) == 1
    assert ("MemcpyFromHost", "u", "fakedev") in copies
    assert not any(v in ("e", "q", "nu") for _, v, _ in copies)  # producer and consumer share a device
    assert len(copies) == len(set(copies))
    _assert_same(double, cpu, {"x": np.array([3, -1, 3, 2, 2, 0], np.float32)})


def test_value_read_on_both_devices_is_copied_once_per_device():
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Cast", ["r"], ["s1"], to=TensorProto.STRING),
             helper.make_node("Cast", ["r"], ["s2"], to=TensorProto.STRING),
             helper.make_node("Neg", ["x"], ["y"])]
    model = _model(nodes, [_vi("x", F, [2])], [_vi("s1", TensorProto.STRING, [2]),
                                                _vi("s2", TensorProto.STRING, [2]), _vi("y", F, [2])])
    double, dev, cpu = _sessions(model)
    copies = _copies(double._core.plan)
    assert copies.count(("MemcpyToHost", "r", "cpu")) == 1
    assert copies.count(("MemcpyFromHost", "x", "fakedev")) == 1
    _assert_same(double, cpu, {"x": np.array([1.0, -2.0], np.float32)})


def test_initializers_are_copied_to_the_device_once_at_creation():
    w = helper.make_tensor("w", F, [3], [1.0, 2.0, 3.0])
    model = _model([helper.make_node("Mul", ["x", "w"], ["y"])], [_vi("x", F, [3])], [_vi("y", F, [3])], [w])
    double, dev, cpu = _sessions(model)
    assert dev.copies_from_host == 1  # w, when the plan was built
    assert _copies(double._core.plan) == [("MemcpyFromHost", "x", "fakedev"), ("MemcpyToHost", "y", "cpu")]
    feed = {"x": np.array([1.0, 1.0, 2.0], np.float32)}
    for _ in range(2):
        _assert_same(double, cpu, feed)
    assert dev.copies_from_host == 3  # one x per run, never w again


def test_dtypes_the_device_lacks_fall_back_to_the_cpu():
    nodes = [helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["b"], ["f"], to=F),
             helper.make_node("Relu", ["f"], ["y"])]
    model = _model(nodes, [_vi("x", F, [3])], [_vi("y", F, [3])])
    double, dev, cpu = _sessions(model)
    assert _provider_of(double, "Cast") == [CPU, CPU]
    assert _provider_of(double, "Relu") == [DEV]
    _assert_same(double, cpu, {"x": np.array([1.3, -2.7, 0.1], np.float32)})


def test_sequences_are_copied_element_by_element():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["x"], ["n"]),
             helper.make_node("SequenceConstruct", ["r", "n"], ["seq"])]
    model = _model(nodes, [_vi("x", F, [2])],
                   [helper.make_tensor_sequence_value_info("seq", F, [2])])
    double, dev, cpu = _sessions(model)
    assert _provider_of(double, "SequenceConstruct") == [DEV]
    out = double.run(None, {"x": np.array([1.0, -1.0], np.float32)})[0]
    assert all(isinstance(t, np.ndarray) for t in out)
    assert dev.copies_to_host == 2
    _assert_same(double, cpu, {"x": np.array([1.0, -1.0], np.float32)})


# --- the shape rule ---------------------------------------------------------------------------


def _reshape_by_shape_model():
    # y = Reshape(Relu(x), Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["d0"], axis=0),
             helper.make_node("Unsqueeze", ["d0", "ax"], ["d0u"]),
             helper.make_node("Concat", ["d0u", "m1"], ["shp"], axis=0),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "shp"], ["y"])]
    inits = [helper.make_tensor("i0", I64, [], [0]), helper.make_tensor("ax", I64, [1], [0]),
             helper.make_tensor("m1", I64, [1], [-1])]
    return _model(nodes, [_vi("x", F, ["N", 2, 3])], [_vi("y", F, None)], inits)


def test_shape_computations_stay_on_the_cpu_without_copies():
    # optimizations off: ReshapeFusion would turn this shape computation into a constant
    double, dev, cpu = _sessions(_reshape_by_shape_model(), ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL)
    for op in ("Shape", "Gather", "Unsqueeze", "Concat"):
        assert _provider_of(double, op) == [CPU], op
    assert _provider_of(double, "Reshape") == [DEV]
    # Shape reads only metadata, Reshape reads its shape on the host: no copy for either
    assert _copies(double._core.plan) == [("MemcpyFromHost", "x", "fakedev"), ("MemcpyToHost", "y", "cpu")]
    assert dev.copies_from_host == 0  # the shape constants stay on the host
    rules = {it.node.op_type: it.rule for it in double._core.plan.partition.items if isinstance(it, Placed)}
    assert rules["Concat"] == "shape" and rules["Reshape"] == "priority"
    _assert_same(double, cpu, {"x": np.arange(12, dtype=np.float32).reshape(2, 2, 3)})


def test_shape_rule_boundaries():
    # Cast of a shape to float leaves the rule (float output); a big int initializer is not a
    # shape value; Range with an output size unknown runs on the device, its inputs on the host.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=F),
             helper.make_node("Concat", ["s", "big"], ["sb"], axis=0),
             helper.make_node("ReduceProd", ["s"], ["n"], keepdims=0),
             helper.make_node("Range", ["zero", "n", "one"], ["idx"]),
             helper.make_node("Mul", ["sf", "sf"], ["y1"]),
             helper.make_node("Neg", ["idx"], ["y2"]),
             helper.make_node("Neg", ["sb"], ["y3"])]
    inits = [helper.make_tensor("big", I64, [100], list(range(100))),
             helper.make_tensor("zero", I64, [], [0]), helper.make_tensor("one", I64, [], [1])]
    model = _model(nodes, [_vi("x", F, ["A", "B"])],
                   [_vi("y1", F, None), _vi("y2", I64, None), _vi("y3", I64, None)], inits)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "A"
    double, dev, cpu = _sessions(model)
    placed = {it.node.outputs[0]: (it.provider.name, it.rule)
              for it in double._core.plan.partition.items if isinstance(it, Placed)}
    assert placed["s"] == (CPU, "shape")
    assert placed["n"] == (CPU, "shape")
    assert placed["sf"][0] == DEV          # float output: not a shape computation
    assert placed["sb"][0] == DEV          # 'big' has 100 elements (> SMALL_SHAPE_ELEMENTS)
    assert placed["y2"][0] == DEV
    assert placed["idx"][0] == DEV         # Range of unknown size: device, inputs on the host
    copies = _copies(double._core.plan)
    assert ("MemcpyFromHost", "n", "fakedev") not in copies  # Range reads its limit on the host
    assert copies.count(("MemcpyFromHost", "s", "fakedev")) == 1  # Cast and Concat read s as data
    _assert_same(double, cpu, {"x": np.zeros((3, 4), np.float32)})


def test_small_int_constant_node_is_a_shape_value():
    nodes = [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", I64, [2], [-1, 2])),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "c"], ["y"])]
    model = _model(nodes, [_vi("x", F, [2, 3])], [_vi("y", F, None)])
    double, dev, cpu = _sessions(model, level=ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL)
    assert _provider_of(double, "Constant") == [CPU]
    assert _provider_of(double, "Reshape") == [DEV]
    assert len(_copies(double._core.plan)) == 2
    _assert_same(double, cpu, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})


# --- subgraphs ----------------------------------------------------------------------------------


def _if_model():
    # cond = ReduceSum(x) > 0 on the device; then: x * w (outer x, outer initializer w);
    # else: Cast(x -> string -> float) (CPU) + x
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["t"])], "then", [], [_vi("t", F, [3])])
    else_g = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xs"], to=TensorProto.STRING),
         helper.make_node("Cast", ["xs"], ["xf"], to=F),
         helper.make_node("Add", ["xf", "x"], ["e"])], "else", [], [_vi("e", F, [3])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["sum"], keepdims=0),
             helper.make_node("Greater", ["sum", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)]
    inits = [helper.make_tensor("zero", F, [], [0.0]), helper.make_tensor("w", F, [3], [2.0, 3.0, 4.0])]
    return _model(nodes, [_vi("x", F, [3])], [_vi("y", F, [3])], inits)


def test_if_branches_are_partitioned_with_outer_scope_copies():
    double, dev, cpu = _sessions(_if_model())
    plan = double._core.plan
    if_step = next(st for st in plan.steps if st.node.op_type == "If")
    assert if_step.provider.name == DEV
    # the condition is read on the host: one copy, in the outer graph; x (a graph input) is on
    # the host already for the else branch and copied once to the device for the rest
    outer = _copies(plan)
    assert outer == [("MemcpyFromHost", "x", "fakedev"), ("MemcpyToHost", "cond", "cpu"),
                     ("MemcpyToHost", "y", "cpu")]
    subs = dict(if_step.subplans)
    assert _copies(subs["then_branch"]) == []  # x and w arrive on the device; t stays there
    assert subs["then_branch"].partition.outer_keys == [("x", "fakedev"), ("w", "fakedev")]
    assert _copies(subs["else_branch"]) == [("MemcpyFromHost", "xf", "fakedev")]
    assert {k for k, _ in if_step.outer_slots} == {("x", "fakedev"), ("w", "fakedev"), ("x", "cpu")}
    names = [n for n, _, _ in double.get_provider_assignment(include_subgraphs=True)]
    assert any(n.endswith("/else_branch/MemcpyFromHost(xf -> fakedev)") for n in names)
    for x in ([1.0, 2.0, 3.0], [-1.5, -2.0, 0.5]):
        _assert_same(double, cpu, {"x": np.array(x, np.float32)})


def _loop_model():
    # for i < M: acc = acc + w * Cast(i); a shape computation on i stays on the host;
    # scan output: acc reshaped by a shape computed from i's Shape
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=F),
         helper.make_node("Mul", ["w", "fi"], ["wi"]),
         helper.make_node("Add", ["acc_in", "wi"], ["acc_out"]),
         helper.make_node("Shape", ["acc_out"], ["s"]),
         helper.make_node("Reshape", ["acc_out", "s"], ["scan"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [_vi("i", I64, []), _vi("cond_in", B, []), _vi("acc_in", F, [2])],
        [_vi("cond_out", B, []), _vi("acc_out", F, [2]), _vi("scan", F, [2])])
    nodes = [helper.make_node("Relu", ["w0"], ["w"]),
             helper.make_node("Loop", ["M", "", "init"], ["final", "stacked"], body=body)]
    return _model(nodes, [_vi("M", I64, []), _vi("init", F, [2]), _vi("w0", F, [2])],
                  [_vi("final", F, [2]), _vi("stacked", F, [None, 2])])


def test_loop_body_is_partitioned_and_outer_values_are_copied_once():
    # optimizations off: ConstantFolding would fold the body's Shape of a static [2]
    double, dev, cpu = _sessions(_loop_model(), ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL)
    plan = double._core.plan
    loop = next(st for st in plan.steps if st.node.op_type == "Loop")
    assert loop.provider.name == DEV
    body = dict(loop.subplans)["body"]
    # M is read on the host (no copy); init goes to the device; w is already there
    assert _copies(plan) == [("MemcpyFromHost", "w0", "fakedev"), ("MemcpyFromHost", "init", "fakedev"),
                             ("MemcpyToHost", "final", "cpu"), ("MemcpyToHost", "stacked", "cpu")]
    # inside: the iteration number arrives on the host and Cast reads it as data (one copy);
    # Shape and Identity(cond) stay on the host; w is bound from outside, on the device
    assert body.partition.outer_keys == [("w", "fakedev")]
    body_ops = {st.node.op_type: st.provider.name for st in body.steps}
    assert body_ops["Shape"] == CPU and body_ops["Identity"] == CPU
    assert body_ops["Add"] == DEV and body_ops["Reshape"] == DEV
    assert _copies(body) == [("MemcpyFromHost", "fi", "fakedev")] or \
        _copies(body) == [("MemcpyFromHost", "i", "fakedev")]
    feed = {"M": np.array(3, np.int64), "init": np.zeros(2, np.float32),
            "w0": np.array([1.0, -2.0], np.float32)}
    before = dev.copies_from_host
    _assert_same(double, cpu, feed)
    # per run: w0, init, and one copy per iteration inside the body (3)
    assert dev.copies_from_host - before == 2 + 3


def test_scan_and_nested_subgraphs_match_the_cpu():
    # Scan whose body holds an If reading an outer value two levels up
    inner_then = helper.make_graph([helper.make_node("Add", ["s_in", "bias"], ["o"])], "t", [], [_vi("o", F, [2])])
    inner_else = helper.make_graph([helper.make_node("Sub", ["s_in", "bias"], ["o2"])], "e", [], [_vi("o2", F, [2])])
    body = helper.make_graph(
        [helper.make_node("ReduceSum", ["xt"], ["rs"], keepdims=0),
         helper.make_node("Greater", ["rs", "zero"], ["c"]),
         helper.make_node("If", ["c"], ["s_mid"], then_branch=inner_then, else_branch=inner_else),
         helper.make_node("Add", ["s_mid", "xt"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body", [_vi("s_in", F, [2]), _vi("xt", F, [2])], [_vi("s_out", F, [2]), _vi("y_t", F, [2])])
    nodes = [helper.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], body=body, num_scan_inputs=1)]
    inits = [helper.make_tensor("bias", F, [2], [0.5, -0.5]), helper.make_tensor("zero", F, [], [0.0])]
    model = _model(nodes, [_vi("s0", F, [2]), _vi("xs", F, [4, 2])], [_vi("s_final", F, [2]), _vi("ys", F, [4, 2])],
                   inits)
    double, dev, cpu = _sessions(model)
    scan = next(st for st in double._core.plan.steps if st.node.op_type == "Scan")
    assert scan.provider.name == DEV
    # bias and zero are initializers of the outer graph used on the device: copied once, at creation
    assert {k for k, _ in scan.outer_slots} == {("bias", "fakedev"), ("zero", "fakedev")}
    assert dev.copies_from_host == 2
    xs = np.array([[1, 2], [-3, -4], [0.5, 0.25], [-1, 0]], np.float32)
    _assert_same(double, cpu, {"s0": np.zeros(2, np.float32), "xs": xs})


# --- failures are loud --------------------------------------------------------------------------


def _graph(model):
    return from_proto(model.graph, {"": 18})


def test_missing_copy_to_the_host_fails_loudly():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unique", ["r"], ["u"])]
    model = _model(nodes, [_vi("x", F, [3])], [_vi("u", F, None)])
    providers = [FakeDeviceExecutionProvider(), CheckedCPUExecutionProvider()]
    part = partition(_graph(model), providers)
    # drop the copy of r to the host: the host-only Unique kernel now receives a device array
    part.items = [it for it in part.items if not (isinstance(it, Copy) and it.value == "r")]
    for it in part.items:
        if isinstance(it, Placed) and it.node.op_type == "Unique":
            assert it.provider.name == CPU
            it.in_keys = ["r"]
    plan = Plan(part.graph, providers, part=part)
    with pytest.raises(ortgpu.RuntimeException, match="in a host kernel .a missing copy"):
        plan.run([np.array([1.0, -1.0, 1.0], np.float32)])


def test_missing_copy_to_the_device_fails_loudly():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", F, [2])], [_vi("y", F, [2])])
    providers = [FakeDeviceExecutionProvider(), CPUExecutionProvider()]
    part = partition(_graph(model), providers)
    part.items = [it for it in part.items if not (isinstance(it, Copy) and it.value == "x")]
    part.items[0].in_keys = ["x"]
    plan = Plan(part.graph, providers, part=part)
    with pytest.raises(ortgpu.RuntimeException, match="host array mixed into a fakedev"):
        plan.run([np.array([1.0, -1.0], np.float32)])


def test_double_refuses_implicit_conversion_and_host_operands():
    from support.device_double import fake_xp
    a = fake_xp.asarray(np.arange(4.0))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError):
        _ = a + np.ones(4)
    assert isinstance(np.sum(a), FakeArray) and float(np.sum(a)) == 6.0  # dispatched, 0-d
    np.testing.assert_array_equal(a.get(), np.arange(4.0))
    with pytest.raises(TypeError, match="cannot hold"):
        fake_xp.asarray(np.array(["a"], dtype=object))


# --- inspection ---------------------------------------------------------------------------------


def test_placement_is_logged_at_verbose_level(caplog):
    so = ortgpu.SessionOptions()
    so.log_severity_level = 0
    with caplog.at_level(logging.INFO, logger="ortgpu"):
        ortgpu.InferenceSession(_if_model().SerializeToString(), so,
                                providers=[FakeDeviceExecutionProvider(), CPU])
    text = caplog.text
    assert "placement:" in text and "copy steps" in text
    assert f"If '' -> {DEV}" in text and "else_branch:" in text
    assert "MemcpyToHost" in text and "initializer w copied to fakedev once" in text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ortgpu"):
        ortgpu.InferenceSession(_if_model().SerializeToString(), providers=[FakeDeviceExecutionProvider(), CPU])
    assert "placement:" not in caplog.text  # only at verbose level
