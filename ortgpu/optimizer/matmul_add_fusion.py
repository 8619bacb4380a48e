"""MatMulAddFusion (basic level): MatMul followed by Add becomes one Gemm, Y = A @ B + C.

Rules: A and B are known to be 2-D (N-D MatMuls stay: Gemm is 2-D only); the MatMul output
is read only by the Add and is not a graph output; the element type is a float type Gemm
takes; C (the Add's other operand) broadcasts to (M, N) without growing it: at most 2 dims,
each (aligned to the right) 1 or known equal to M (A's dim 0) or N (B's dim 1), by value or
by dim_param.  The model's ai.onnx opset is 7 or newer (Gemm's unidirectional broadcast).
The Gemm takes the Add's place and name.
"""
from __future__ import annotations

from onnx import TensorProto

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import consumers, dims, elem_type, output_names, same_dim
from ortgpu.optimizer.graph_tools.graph_edit import remove

_GEMM_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}


def _bias_fits(c_dims: list | None, m, n) -> bool:
    if c_dims is None or len(c_dims) > 2:
        return False
    want = [m, n][2 - len(c_dims):]
    return all(c == 1 or same_dim(c, w) for c, w in zip(c_dims, want))


def _gemm_for(mm: Node, add: Node, graph: Graph) -> Node | None:
    a, b = mm.inputs
    c = add.inputs[1] if add.inputs[0] == mm.outputs[0] else add.inputs[0]
    a_dims, b_dims = dims(graph, a), dims(graph, b)
    if (a_dims is None or b_dims is None or len(a_dims) != 2 or len(b_dims) != 2
            or elem_type(graph, a) not in _GEMM_TYPES or not _bias_fits(dims(graph, c), a_dims[0], b_dims[1])):
        return None
    return Node(add.name or mm.name, "Gemm", "", graph.opsets.get("", 0), [a, b, c], [add.outputs[0]], {})


def fuse_matmul_add(graph: Graph, providers, overridable: set[str]) -> int:
    if graph.opsets.get("", 0) < 7:
        return 0
    users = consumers(graph)
    outs = output_names(graph)
    replaced: dict[int, Node] = {}
    dead = []
    for mm in graph.nodes:
        if mm.op_type != "MatMul" or mm.domain != "" or mm.outputs[0] in outs:
            continue
        readers = users.get(mm.outputs[0], [])
        if len(readers) != 1 or readers[0].op_type != "Add" or readers[0].domain != "" or id(readers[0]) in replaced:
            continue
        gemm = _gemm_for(mm, readers[0], graph)
        if gemm is not None:
            replaced[id(readers[0])] = gemm
            dead.append(mm)
    graph.nodes = [replaced.get(id(n), n) for n in graph.nodes]
    remove(graph, dead)
    return len(dead)
