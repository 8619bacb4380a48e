"""MatMulAddFusion: 2-D MatMul + a bias that broadcasts to (M, N) becomes Gemm; the rest stays."""
import numpy as np
import pytest
from onnx import TensorProto, helper

from support.pass_check import check_outputs, init, model, ops, run_pass

RNG = np.random.default_rng(1)
B = RNG.standard_normal((4, 5)).astype(np.float32)


def _model(a_shape, c, b=B, a_elem=TensorProto.FLOAT, matmul_read_twice=False, c_first=False):
    nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]),
             helper.make_node("Add", ["c", "m"] if c_first else ["m", "c"], ["y"])]
    outs = [("y", a_elem, None)]
    if matmul_read_twice:
        nodes.append(helper.make_node("Neg", ["m"], ["z"]))
        outs.append(("z", a_elem, None))
    return model(nodes, [("a", a_elem, a_shape)], outs, [init("b", b), init("c", c)])


@pytest.mark.parametrize("c,first", [(RNG.standard_normal(5).astype(np.float32), False),
                                     (RNG.standard_normal((1, 5)).astype(np.float32), True),
                                     (np.float32(2.5), False),
                                     (RNG.standard_normal((3, 1)).astype(np.float32), False)],
                         ids=["N", "1N", "scalar", "M1"])
def test_matmul_add_becomes_gemm(c, first):
    m = _model([3, 4], c, c_first=first)
    graph, n = run_pass(m, "MatMulAddFusion")
    assert n == 1 and ops(graph) == ["Gemm"] and graph.nodes[0].outputs == ["y"]
    check_outputs(m, {"a": RNG.standard_normal((3, 4)).astype(np.float32)}, "MatMulAddFusion", rtol=1e-5, atol=1e-6)


def test_symbolic_rows_fuse_with_a_row_bias():
    m = _model(["M", 4], RNG.standard_normal(5).astype(np.float32))
    graph, n = run_pass(m, "MatMulAddFusion")
    assert n == 1
    for rows in (1, 7):
        check_outputs(m, {"a": RNG.standard_normal((rows, 4)).astype(np.float32)}, "MatMulAddFusion",
                      rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw,a", [
    (dict(a_shape=[2, 3, 4], c=np.float32(1)), (2, 3, 4)),                           # 3-D A
    (dict(a_shape=["M", 4], c=np.ones((3, 5), np.float32)), (3, 4)),                 # rows unknown to match
    (dict(a_shape=[3, 4], c=np.ones((2, 3, 5), np.float32)), (3, 4)),                # grows the rank
    (dict(a_shape=[3, 4], c=np.float32(1), matmul_read_twice=True), (3, 4)),
], ids=["3d", "bias_rows_not_known_equal", "bias_rank", "matmul_read_twice"])
def test_near_misses_stay(kw, a):
    m = _model(**kw)
    graph, n = run_pass(m, "MatMulAddFusion")
    assert n == 0 and "MatMul" in ops(graph)
    check_outputs(m, {"a": RNG.standard_normal(a).astype(np.float32)}, "MatMulAddFusion", rtol=1e-5, atol=1e-6)


def test_integer_matmul_stays():
    m = _model([3, 4], np.int64([1, 2, 3, 4, 5]), b=np.ones((4, 5), np.int64), a_elem=TensorProto.INT64)
    graph, n = run_pass(m, "MatMulAddFusion")
    assert n == 0
