"""Chains and DAGs of element-wise ops become one ``ortgpu::FusedElementwise`` node
(extended level, pass name "ElementwiseChainFusion").

On a GPU each element-wise op is a kernel launch and a round trip through memory; fused,
the whole expression runs per element in registers (one generated CUDA kernel, compiled at
session creation: providers/cuda/kernels/fused_elementwise.py).  On the CPU nothing is
gained (NumPy runs op by op either way), so the pass only fuses nodes that a device
provider (one whose ``device`` is not "cpu") would run and that offers a kernel for the
fused op; with only the CPU provider it changes nothing.

Rules.  A node is fusable when it is an ai.onnx op of opset 7 or later listed in
``fused_elementwise.OPS`` with one output, all its values of known type float16/float32/
float64 (bool for comparisons, Not, Where's condition and Cast), Pow's exponent and Clip's
bounds scalar constants.  A region grows backwards from a root (visited last to first): a
producer joins when it is fusable, on the same provider, not a graph output, every
consumer of its output is already in the region, and its output is not provably smaller
than the root's (a known dim or rank that differs: such an op would be recomputed on a
broadcast copy).  A region of two or more nodes is replaced, at the root's position, by one
node whose inputs are the region's inputs.  Constants of one element become literals of
the program when that cannot change the output's rank (0-d ones always; others when an
input of at least their rank is known).  The fused node's output is the broadcast of its
inputs, exactly the shape the ops give (broadcasting composes).  A region is left alone
when its inputs provably do not broadcast together (known dims that differ and are not 1),
when all its inputs are bool (logic that may belong to a shape computation, which the
partitioner keeps on the host), or when it would need more than ``MAX_INPUTS`` inputs or
``MAX_OPS`` ops.  Shapes may be partly unknown (shape inference often loses dims after
computed Reshapes): the kernels broadcast at run time.
"""
from __future__ import annotations

import itertools

from ortgpu import fused_ops
from ortgpu.graph import Graph, Node, attrs_with_defaults
from ortgpu.graph_query import consumers, dims, drop_unread_initializers, dtype_name, producers
from ortgpu.placement import provider_of
from ortgpu.providers.kernels import fused_elementwise as fe

NAME = "ElementwiseChainFusion"
_names = itertools.count()


# ---------------------------------------------------------------- facts about values

def _known(d) -> bool:
    return isinstance(d, int)


def conflicting(shapes) -> bool:
    """Whether partial shapes provably do not broadcast together: at one position (aligned
    right) two known sizes differ and neither is 1."""
    shapes = [s for s in shapes if s is not None]
    for k in range(1, max((len(s) for s in shapes), default=0) + 1):
        sizes = {s[-k] for s in shapes if len(s) >= k and _known(s[-k]) and s[-k] != 1}
        if len(sizes) > 1:
            return True
    return False


def provably_smaller(shape, root) -> bool:
    """Whether a value of partial shape ``shape`` is provably smaller than the root's (a
    lower rank, or a known dim that is 1 where the root's is known and larger)."""
    if shape is None or root is None:
        return False
    if len(shape) != len(root):
        return True
    return any(_known(a) and _known(b) and a != b for a, b in zip(shape, root))


class _Facts:
    """What the pass reads about the graph: constants, consumers, outputs, owners."""

    def __init__(self, graph: Graph, providers, overridable):
        self.graph = graph
        self.providers = list(providers)
        self.consts = {n: v for n, v in graph.initializers.items() if n not in overridable}
        self.outputs = {v.name for v in graph.outputs}
        self.users: dict[str, list[Node]] = consumers(graph)
        self.producer: dict[str, Node] = producers(graph)
        self._owner: dict[int, object] = {}

    def scalar_const(self, name: str) -> bool:
        v = self.consts.get(name)
        return v is not None and v.size == 1 and v.dtype.name in fe.CONST_TYPES

    def owner(self, node: Node):
        """The device provider that would run ``node`` and also runs FusedElementwise, else None."""
        key = id(node)
        if key not in self._owner:
            prov = provider_of(node, self.graph, self.providers)
            if prov is None or prov.device == "cpu" or prov.kernel_for(fe.OP_TYPE, fe.DOMAIN, 1) is None:
                prov = None
            self._owner[key] = prov
        return self._owner[key]


# ---------------------------------------------------------------- which nodes fuse

def _operands_ok(facts: _Facts, node: Node, kinds, result: str) -> bool:
    g = facts.graph
    args = list(node.inputs)
    if kinds == ("f*",):
        kinds = ("f",) * len(args)
    elif len(args) > len(kinds) or not args:
        return False
    args += [""] * (len(kinds) - len(args))
    first = None
    for kind, x in zip(kinds, args):
        if kind == "k":     # optional bound: a scalar constant or omitted
            if x and not (facts.scalar_const(x) and dtype_name(g, x) in fe.FLOAT_TYPES):
                return False
            continue
        if not x:
            return False
        t = dtype_name(g, x)
        if kind == "n":
            if not facts.scalar_const(x):
                return False
        elif kind == "f":
            if t not in fe.FLOAT_TYPES or (first is not None and t != first):
                return False
            first = t
        elif kind == "b":
            if t != "bool":
                return False
        elif t not in fe.ELEMENT_TYPES:   # "*": Cast's source
            return False
    out = dtype_name(g, node.outputs[0])
    if result == "b":
        return out == "bool"
    if result == "cast":
        return out in fe.ELEMENT_TYPES
    return out == first


def fusable(facts: _Facts, node: Node) -> bool:
    """Whether ``node`` may be part of a fused region (module docstring, first rule)."""
    if node.domain or node.op_type not in fe.OPS or node.opset < 7 or node.subgraphs():
        return False
    if len(node.outputs) != 1 or not node.outputs[0]:
        return False
    if node.op_type == "Clip" and node.opset < 11 and len(node.inputs) != 1:
        return False
    if not fe.has_shared_kernel(node.op_type, node.opset):
        return False
    kinds, result = fe.OPS[node.op_type]
    return _operands_ok(facts, node, kinds, result) and facts.owner(node) is not None


def grow_region(facts: _Facts, root: Node, taken: set[int]) -> list[Node]:
    """The nodes fused with ``root`` (root included), in graph order."""
    shape = dims(facts.graph, root.outputs[0])
    prov = facts.owner(root)
    region = {id(root): root}
    changed = True
    while changed:
        changed = False
        for node in list(region.values()):
            for x in node.inputs:
                p = facts.producer.get(x)
                if (p is None or id(p) in region or id(p) in taken or x in facts.outputs
                        or not fusable(facts, p) or facts.owner(p) is not prov
                        or provably_smaller(dims(facts.graph, x), shape)
                        or not all(id(u) in region for u in facts.users.get(x, []))):
                    continue
                region[id(p)] = p
                changed = True
    order = {id(n): i for i, n in enumerate(facts.graph.nodes)}
    return sorted(region.values(), key=lambda n: order[id(n)])


# ---------------------------------------------------------------- the program

def build_program(facts: _Facts, region: list[Node]) -> tuple[fe.Program, list[str], list[str]] | None:
    """The program of ``region``, the names of its tensor inputs and of the constants it
    embeds, or None when the region cannot be one node (module docstring)."""
    g = facts.graph
    produced = {o: k for k, n in enumerate(region) for o in n.outputs}
    required_const = set()
    for n in region:
        kinds = fe.OPS[n.op_type][0]
        required_const.update(x for kind, x in zip(kinds, n.inputs) if kind in "kn" and x)
    external = list(dict.fromkeys(x for n in region for x in n.inputs if x and x not in produced))
    known_rank = max((len(s) for x in external if not facts.scalar_const(x)
                      for s in [dims(g, x)] if s is not None), default=0)
    inputs: list[str] = []
    consts: dict[str, int] = {}
    const_values: list[tuple[float, str]] = []
    operand: dict[str, str] = {}
    for x in external:
        if facts.scalar_const(x) and (x in required_const or facts.consts[x].ndim <= known_rank):
            if facts.consts[x].ndim > known_rank:
                return None   # a bound or exponent whose dims the output may need
            consts[x] = len(const_values)
            value = facts.consts[x].reshape(()).item()
            const_values.append((float(value), facts.consts[x].dtype.name))
            operand[x] = f"c{consts[x]}"
        else:
            operand[x] = f"i{len(inputs)}"
            inputs.append(x)
    if not inputs or conflicting([dims(g, x) for x in inputs]):
        return None
    if all(dtype_name(g, x) == "bool" for x in inputs):
        return None   # logic on masks only: may be a shape computation the host should keep
    ops = []
    for n in region:
        attrs = attrs_with_defaults(n, g.opsets)
        args = tuple(operand[x] if x in operand else (f"t{produced[x]}" if x else "") for x in n.inputs)
        ops.append(fe.Op(n.op_type, args, tuple(sorted(attrs.items())), dtype_name(g, n.outputs[0])))
    program = fe.Program(g.opsets.get("", 1), tuple(dtype_name(g, x) for x in inputs),
                         tuple(const_values), tuple(ops))
    try:
        fe.validate(program)
    except fe.ProgramError:
        return None
    return program, inputs, list(consts)


def fuse_elementwise_chains(graph: Graph, providers, overridable: set[str]) -> int:
    """Replace each fusable region of two or more nodes by one FusedElementwise node;
    returns the number of fused nodes made (0 on a CPU-only session)."""
    if not any(p.device != "cpu" for p in providers):
        return 0
    facts = _Facts(graph, providers, overridable)
    taken: set[int] = set()
    replace: dict[int, Node] = {}
    dropped: set[str] = set()
    for root in reversed(graph.nodes):
        if id(root) in taken or not fusable(facts, root):
            continue
        region = grow_region(facts, root, taken)
        if len(region) < 2:
            continue
        built = build_program(facts, region)
        if built is None:
            continue
        program, inputs, embedded = built
        dropped.update(embedded)
        taken.update(id(n) for n in region)
        fused = Node(f"{root.name or root.outputs[0]}/FusedElementwise_{next(_names)}", fe.OP_TYPE,
                     fe.DOMAIN, graph.opsets.setdefault(fe.DOMAIN, fused_ops.DOMAIN_VERSION),
                     inputs, [root.outputs[0]], {"program": program.text()})
        replace[id(root)] = fused
    if not replace:
        return 0
    graph.nodes = [replace.get(id(n), n) for n in graph.nodes if id(n) not in taken or id(n) in replace]
    drop_unread_initializers(graph, dropped)
    return len(replace)
