"""Integer tensors that hold shapes, known element by element from the value types.

Exported models compute shapes at run time: Shape, then Gather/Slice of single dims,
Unsqueeze, Concat with constants.  :class:`ShapeValues` follows such a chain back to the
Shape nodes and says, per element, what it holds: an ``int`` when the dim is static (or the
element a constant), else a symbol that stands for the dim: its dim_param (a ``str``; equal
names are equal sizes) or ``("dim", tensor, axis)`` for a dim without a name.
ConstantFolding folds the chains whose elements are all ints; ReshapeFusion turns the
symbols that are the Reshape input's own dims into 0 ("copy this dim").

Ops followed: Shape (with start/end), Gather (axis 0, constant indices), Unsqueeze of a
scalar, Squeeze of one element, Concat (axis 0), Slice (constant, step 1), Cast to an
integer type, Identity; constants of at most MAX_ELEMENTS integers.
"""
from __future__ import annotations

import dataclasses

from onnx import TensorProto

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import dims, int_list, producers

MAX_ELEMENTS = 64
FOLLOWED_OPS = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity"})
_INT_TYPES = {TensorProto.INT64, TensorProto.INT32}


@dataclasses.dataclass(frozen=True)
class ShapeValue:
    items: tuple      # int or symbol per element
    scalar: bool      # a 0-d tensor (one item) rather than a 1-D one

    def ints(self) -> list[int] | None:
        """The elements when all are known ints, else None."""
        return list(self.items) if all(isinstance(i, int) for i in self.items) else None


class ShapeValues:
    """What the integer values of `graph` hold, element by element, as far as it is known."""

    def __init__(self, graph: Graph, consts: dict):
        self.graph = graph
        self.consts = consts
        self.made = producers(graph)
        self._memo: dict[str, ShapeValue | None] = {}

    def dim_symbols(self, tensor: str) -> list | None:
        """`tensor`'s dims as ShapeValue items (int, dim_param or ("dim", tensor, axis))."""
        shape = dims(self.graph, tensor)
        if shape is None:
            return None
        return [d if d is not None else ("dim", tensor, i) for i, d in enumerate(shape)]

    def of(self, name: str) -> ShapeValue | None:
        if name not in self._memo:
            self._memo[name] = None  # a cycle cannot happen, but never recurse forever
            self._memo[name] = self._compute(name)
        return self._memo[name]

    def _compute(self, name: str) -> ShapeValue | None:
        if name in self.consts:
            value = self.consts[name]
            ints = int_list(value) if value.size <= MAX_ELEMENTS else None
            return ShapeValue(tuple(ints), value.ndim == 0) if ints is not None else None
        node = self.made.get(name)
        if node is None or node.domain != "" or node.outputs[0] != name or node.op_type not in FOLLOWED_OPS:
            return None
        return getattr(self, "_" + node.op_type)(node)

    # --- one method per op followed (named after it) ---------------------------------------
    def _Shape(self, node: Node):
        syms = self.dim_symbols(node.inputs[0])
        if syms is None:
            return None
        start, end = node.attrs.get("start", 0), node.attrs.get("end")
        return ShapeValue(tuple(syms[start:end]), False)

    def _Gather(self, node: Node):
        data, idx = self.of(node.inputs[0]), self.consts.get(node.inputs[1])
        if data is None or data.scalar or node.attrs.get("axis", 0) not in (0, -1) or idx is None:
            return None
        picks = int_list(idx)
        n = len(data.items)
        if picks is None or any(not -n <= i < n for i in picks):
            return None
        return ShapeValue(tuple(data.items[i] for i in picks), idx.ndim == 0)

    def _Unsqueeze(self, node: Node):
        data = self.of(node.inputs[0])
        if node.opset < 13:
            axes = node.attrs.get("axes")
        else:
            axes = int_list(self.consts.get(node.inputs[1])) if len(node.inputs) > 1 and node.inputs[1] else None
        if data is None or not data.scalar or axes not in ([0], [-1]):
            return None
        return ShapeValue(data.items, False)

    def _Squeeze(self, node: Node):
        data = self.of(node.inputs[0])
        if data is None or data.scalar or len(data.items) != 1:
            return None
        return ShapeValue(data.items, True)

    def _Concat(self, node: Node):
        if node.attrs.get("axis") not in (0, -1):
            return None
        parts = [self.of(x) for x in node.inputs]
        if any(p is None or p.scalar for p in parts):
            return None
        return ShapeValue(tuple(i for p in parts for i in p.items), False)

    def _Slice(self, node: Node):
        data = self.of(node.inputs[0])
        if data is None or data.scalar or node.opset < 10:
            return None
        ins = node.inputs + [""] * (5 - len(node.inputs))
        starts, ends = (int_list(self.consts.get(x)) for x in ins[1:3])
        axes = int_list(self.consts.get(ins[3])) if ins[3] else [0]
        steps = int_list(self.consts.get(ins[4])) if ins[4] else [1]
        if starts is None or ends is None or len(starts) != 1 or axes not in ([0], [-1]) or steps != [1]:
            return None
        return ShapeValue(data.items[starts[0]:ends[0]], False)

    def _Cast(self, node: Node):
        return self.of(node.inputs[0]) if node.attrs.get("to") in _INT_TYPES else None

    def _Identity(self, node: Node):
        return self.of(node.inputs[0])
