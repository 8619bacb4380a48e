"""Every ai.onnx op that onnxruntime's CUDA execution provider covers runs on ortgpu's CUDA
provider (issue: "every ai.onnx op that onnxruntime's CUDA EP covers runs on the GPU").

Two checks, no GPU needed:
* the registry: every since-version of each op has a kernel the CUDA provider can run (a
  provider="cuda" kernel, or a shared kernel not kept on the host);
* the partitioner: in the ONNX backend node suite, each op is placed on the CUDA provider
  (a CUDAExecutionProvider told it has one device) in at least one case whose element types
  CuPy holds, unless the partitioner keeps it on the CPU on purpose as a small shape
  computation (Shape, Size, ... as onnxruntime does).
"""
import collections

import onnx
import onnx.backend.test
import pytest
from onnx import TensorProto, helper

from ortgpu.coverage import ORT_CUDA_OPS, coverage, cuda_status
from ortgpu.graph import from_proto
from ortgpu.loading import prepare_model
from ortgpu.partition import Placed, partition
from ortgpu.providers.cpu import CPUExecutionProvider
from ortgpu.providers.cuda.provider import CUDAExecutionProvider


def test_the_list_is_onnx_ops():
    assert len(ORT_CUDA_OPS) == len(set(ORT_CUDA_OPS)) >= 136
    assert [op for op in ORT_CUDA_OPS if not onnx.defs.has(op)] == []


def test_every_version_of_every_ort_cuda_op_has_a_kernel_the_cuda_provider_runs():
    rows = {r["op"]: r for r in coverage() if r["domain"] == "ai.onnx"}
    gaps = {}
    for op in ORT_CUDA_OPS:
        r = rows[op]
        status = cuda_status("", op, r["providers"])
        usable = set(r["providers"].get("cuda", [])) | (
            set(r["providers"].get("shared", [])) if status in ("cuda", "shared") else set())
        missing = [v for v in r["versions"] if v not in usable]
        if missing:
            gaps[op] = (status, missing)
    assert gaps == {}


@pytest.fixture(scope="module")
def suite_placement():
    """op -> Counter of where its nodes went ('cuda', 'shape', 'cpu'), over the node suite."""
    cuda = CUDAExecutionProvider(None, device_count=1)
    providers = [cuda, CPUExecutionProvider()]
    placed = collections.defaultdict(collections.Counter)
    models = [case.model for case in onnx.backend.test.loader.load_model_tests(kind="node")]
    for model in models + _models_the_suite_lacks():
        try:
            model, _ = prepare_model(model.SerializeToString())
            opsets = {o.domain: o.version for o in model.opset_import}
            part = partition(from_proto(model.graph, opsets), providers)
        except Exception:  # noqa: BLE001  (cases the CPU also refuses are counted elsewhere)
            continue
        _count(part, cuda, placed)
    return placed


def _models_the_suite_lacks() -> list:
    """One-node float32 models of the ops no node-suite case holds as a node of its own."""
    F, seq = TensorProto.FLOAT, helper.make_tensor_sequence_value_info
    x = helper.make_tensor_value_info("x", F, [2, 3])
    y = helper.make_tensor_value_info("y", F, None)
    s_in, s_out = seq("s", F, [2, 3]), seq("y", F, None)
    pos = helper.make_tensor_value_info("pos", TensorProto.INT64, [])
    cases = [
        (helper.make_node("RandomNormal", [], ["y"], shape=[2, 3]), [], y),
        (helper.make_node("RandomUniform", [], ["y"], shape=[2, 3]), [], y),
        (helper.make_node("RandomNormalLike", ["x"], ["y"]), [x], y),
        (helper.make_node("RandomUniformLike", ["x"], ["y"]), [x], y),
        (helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0), [s_in], y),
        (helper.make_node("SequenceErase", ["s", "pos"], ["y"]), [s_in, pos], s_out),
    ]
    return [helper.make_model(helper.make_graph([node], node.op_type, ins, [out]),
                              opset_imports=[helper.make_opsetid("", 18)])
            for node, ins, out in cases]


def _count(part, cuda, placed) -> None:
    """Add the placements of a partition and of its subgraphs' partitions."""
    for item in part.items:
        if not isinstance(item, Placed):
            continue
        if not item.node.domain:
            where = "cuda" if item.provider is cuda else "shape" if item.rule == "shape" else "cpu"
            placed[item.node.op_type][where] += 1
        for _, sub in item.subparts:
            for p in sub if isinstance(sub, list) else [sub]:
                _count(p, cuda, placed)


def test_every_ort_cuda_op_is_placed_on_cuda_in_the_node_suite(suite_placement):
    never = {op: dict(suite_placement[op]) for op in ORT_CUDA_OPS
             if not (suite_placement[op]["cuda"] or suite_placement[op]["shape"])}
    total = collections.Counter()
    for op in ORT_CUDA_OPS:
        total.update(suite_placement[op])
    print(f"\nnode-suite nodes of onnxruntime's CUDA ops: {dict(total)}")
    assert never == {}


# Ops that every node-suite case feeds small integer shape data: the partitioner keeps them on
# the CPU by its shape rule (onnxruntime's CUDA EP also leaves such nodes to the CPU).
SHAPE_ONLY_IN_SUITE = {"Shape", "Size"}


def test_only_shape_ops_are_never_placed_on_cuda(suite_placement):
    shape_only = {op for op in ORT_CUDA_OPS if not suite_placement[op]["cuda"]}
    assert shape_only == SHAPE_ONLY_IN_SUITE
