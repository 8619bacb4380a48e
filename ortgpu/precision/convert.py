"""Float32 ONNX models to float16 or bfloat16, with float32 islands and Casts at their borders.

Rules (checked by tests/test_precision_convert.py against onnxruntime and onnxconverter-common):
* A node runs narrow unless it is blocked: its op type is in `op_block_list`, its name in
  `node_block_list`, or onnx has no schema for it (custom domains).  A narrow node takes the
  narrow type on every input whose schema allows it (see node_rules.py); fixed float32 inputs
  (Resize scales) stay float32.  Attribute-typed outputs follow (attributes.py).
* A blocked node sees exactly its original types; its subgraphs are left in float32.
* Where a value's type differs from what a consumer wants, one Cast per (value, type) is
  inserted before the first such consumer.  A float32 initializer that a narrow consumer wants
  gets a converted copy instead (clamped into [min_positive_val, max_finite_val] for float16);
  when no consumer wants the float32 original any more, the copy takes the original's name.
* Graph inputs and outputs: with `keep_io_types` the top graph keeps its declared types (Casts
  inside), else float32 inputs and outputs become narrow.  Subgraphs of narrow If/Loop/Scan
  nodes take and give the narrow type, so the control-flow node's own types line up.
* value_info entries follow the values' new types; the model stays valid for `onnx.checker`.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ortgpu.dtypes import elem_name, type_str
from ortgpu.graph_query import proto_names, proto_reads, proto_subgraphs, tensor_type
from ortgpu.precision.attributes import narrow_typed_attributes
from ortgpu.precision.block_lists import DEFAULT_OP_BLOCK_LIST
from ortgpu.optimizer.graph_tools.proto_rename import rename_definition, rename_uses
from ortgpu.precision.proto_edits import with_types
from ortgpu.precision.node_rules import is_float, plan_node
from ortgpu.precision.tensors import FLOAT16_MAX_FINITE, FLOAT16_MIN_POSITIVE, TARGET_DTYPES, lower_tensor
from ortgpu.providers.registry import schema_for

# Ops that pick or move values without arithmetic: a constant beyond the float16 range is
# clamped for them (an attention mask's -3.4e38 fill becomes -65504, still "minus a lot"),
# where an arithmetic op with such a constant stays float32.
_VALUE_PICKING_OPS = frozenset({
    "Where", "Clip", "Max", "Min", "Expand", "Concat", "Reshape", "Identity", "Gather", "GatherElements",
    "GatherND", "Tile", "Pad", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Flatten", "ScatterND",
    "ScatterElements"})


@dataclasses.dataclass
class ConversionReport:
    """What a conversion did: the narrow type's name, nodes kept in float32 (name, op type,
    why), narrow node count, inserted Casts, converted initializers."""
    target_name: str = "float16"
    kept_float32: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    narrow_nodes: int = 0
    casts: int = 0
    converted_initializers: int = 0


def lower_type_proto(tp: onnx.TypeProto, target: int) -> None:
    """Replace float32 element types inside `tp` (tensor, sequence, optional, map values) by `target`."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type" and tp.tensor_type.elem_type == TensorProto.FLOAT:
        tp.tensor_type.elem_type = target
    elif kind == "sequence_type":
        lower_type_proto(tp.sequence_type.elem_type, target)
    elif kind == "optional_type":
        lower_type_proto(tp.optional_type.elem_type, target)
    elif kind == "map_type":
        lower_type_proto(tp.map_type.value_type, target)


class _Scope:
    """The values one graph defines: original type strings, whether each is now narrow, and its
    float32 initializers; names it does not define are looked up in the enclosing scope."""

    def __init__(self, parent: "_Scope | None"):
        self.parent = parent
        self.types: dict[str, str | None] = {}
        self.narrow: dict[str, bool] = {}
        self.initializers: dict[str, TensorProto] = {}
        self.big_constants: dict[str, TensorProto] = {}  # float32 Constant outputs float16 cannot hold

    def constant(self, name: str) -> TensorProto | None:
        """The float32 initializer or out-of-range Constant named `name`, if it is one."""
        s = self.owner(name)
        if s is None:
            return None
        return s.initializers.get(name) if name in s.initializers else s.big_constants.get(name)

    def owner(self, name: str) -> "_Scope | None":
        s = self
        while s is not None and name not in s.types:
            s = s.parent
        return s

    def type_of(self, name: str) -> str | None:
        s = self.owner(name)
        return s.types[name] if s is not None else None

    def is_narrow(self, name: str) -> bool:
        s = self.owner(name)
        return s is not None and s.narrow.get(name, False)


class _Converter:
    def __init__(self, target: int, min_positive_val: float, max_finite_val: float,
                 op_block_list, node_block_list, taken: set, opsets: dict[str, int]):
        self.target = target
        self.opsets = opsets
        self.narrow_name = elem_name(target)
        self.clamp = (min_positive_val, max_finite_val)
        self.op_block = frozenset(op_block_list)
        self.node_block = frozenset(node_block_list)
        self.taken = taken
        self.report = ConversionReport(target_name=self.narrow_name)
        self.magnitudes: dict[int, tuple[float, TensorProto]] = {}

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    # --- one graph -------------------------------------------------------------------------
    def graph(self, g: onnx.GraphProto, parent: _Scope | None, narrow_io: bool, frozen: bool,
              keep_outputs: bool = False) -> None:
        """Convert `g` in place.  `narrow_io`: float32 formal inputs and outputs become narrow;
        `frozen`: every node keeps float32 (the subgraph of a blocked node); `keep_outputs`: the
        top graph's outputs keep their declared types."""
        scope = _Scope(parent)
        declared = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
        input_names = {vi.name for vi in g.input}
        for vi in g.input:
            scope.types[vi.name] = type_str(vi.type)
            scope.narrow[vi.name] = narrow_io and not frozen and is_float(scope.types[vi.name])
            if scope.narrow[vi.name]:
                lower_type_proto(vi.type, self.target)
        inits = list(g.initializer)
        for i, t in enumerate(inits):
            if t.name in input_names:  # an overridable initializer: it has the input's type
                if scope.narrow[t.name] and t.data_type == TensorProto.FLOAT:
                    g.initializer[i].CopyFrom(lower_tensor(t, self.target, *self.clamp))
                continue
            scope.types[t.name] = type_str(helper.make_tensor_type_proto(t.data_type, None))
            scope.narrow[t.name] = False
            if t.data_type == TensorProto.FLOAT:
                scope.initializers[t.name] = t
        made = _GraphEdits(g)
        for node in list(g.node):
            self._node(node, scope, declared, made, frozen)
            made.nodes.append(node)
        del g.node[:]
        g.node.extend(made.nodes)
        self._outputs(g, scope, made, narrow_io and not frozen, keep_outputs)
        self._value_info(g, scope, made)
        self._settle_initializers(g, made)

    def _node(self, node, scope: _Scope, declared: dict, made: "_GraphEdits", frozen: bool) -> None:
        """Decide `node`'s types, Cast its inputs to them, convert its subgraphs, record its outputs."""
        d = self._decide(node, scope, declared, frozen)
        if d.reason is not None and not frozen:
            self.report.kept_float32.append((node.name, node.op_type, d.reason))
        elif d.reason is None:
            self.report.narrow_nodes += 1
        for i, name in enumerate(node.input):
            if name and is_float(scope.type_of(name)) and scope.is_narrow(name) != d.want[i]:
                node.input[i] = self._materialize(name, d.want[i], scope, made)
        for sub in proto_subgraphs(node):
            self.graph(sub, scope, narrow_io=d.reason is None, frozen=d.reason is not None)
        for j, name in enumerate(node.output):
            if name:
                scope.types[name] = d.types[j]
                scope.narrow[name] = d.out_narrow[j]

    def _decide(self, node, scope: _Scope, declared: dict, frozen: bool) -> "_Decision":
        """Which inputs `node` wants narrow and which outputs become narrow, or why it keeps float32."""
        in_types = [scope.type_of(n) if n else None for n in node.input]
        out_types = [type_str(declared[o].type) if o in declared else None for o in node.output]
        control_flow = any(True for _ in proto_subgraphs(node))
        if control_flow and not any(out_types):
            out_types = _control_flow_output_types(node, out_types)
        schema = schema_for(node.op_type, self.opsets.get(node.domain, 1), node.domain)
        too_big = self._out_of_range(node, scope)
        plan = plan_node(schema, in_types, out_types, self.narrow_name, too_big) if schema is not None else None
        reason = self._block_reason(node, schema, frozen)
        if reason is None and self._out_of_range_constant(node) is not None:
            scope.big_constants[node.output[0]] = self._out_of_range_constant(node)
            reason = "its value exceeds the float16 range; consumers get a clamped copy where they need one"
        if reason is None:
            reason = self._plan_problem(node, plan, in_types, too_big, control_flow, schema)
        keep = [False] * len(node.input), [False] * len(node.output)
        if reason is not None:
            return _Decision(reason, *keep, plan.output_types if plan is not None else out_types)
        out_narrow = list(plan.lower_outputs)
        for j in plan.attribute_typed:
            out_narrow[j] = control_flow or narrow_typed_attributes(
                node, self.target, bool(plan.lower_inputs and plan.lower_inputs[0]), *self.clamp)
        return _Decision(None, plan.lower_inputs, out_narrow, plan.output_types)

    def _plan_problem(self, node, plan, in_types, too_big, control_flow: bool, schema) -> str | None:
        """Why a node the block lists let through still keeps float32, or None."""
        clamped = [node.input[i] for i, big in enumerate(too_big) if big and plan.lower_inputs[i]]
        if clamped and node.op_type not in _VALUE_PICKING_OPS:
            # clamping would change the arithmetic (a BatchNormalization variance of 1e8)
            return f"input '{clamped[0]}' is a constant beyond the float16 range"
        if control_flow and (plan.lower_inputs != [is_float(t) for t in in_types] or any(
                is_float(t) and j not in plan.attribute_typed and not plan.lower_outputs[j]
                for j, t in enumerate(plan.output_types))):
            return f"its schema does not take {self.narrow_name} for every float input and output"
        if (not any(plan.lower_inputs) and not any(plan.lower_outputs) and not plan.attribute_typed
                and any(map(is_float, in_types + plan.output_types))):
            return f"its schema (opset {schema.since_version}) takes no {self.narrow_name} here"
        return None

    def _out_of_range(self, node, scope: _Scope) -> list[bool]:
        """Per input: a float32 initializer or Constant with a magnitude float16 cannot hold."""
        flags = []
        for name in node.input:
            t = scope.constant(name) if name else None
            flags.append(self.target == TensorProto.FLOAT16 and t is not None and self._magnitude(t) > self.clamp[1])
        return flags

    def _magnitude(self, t: TensorProto) -> float:
        key = id(t)
        if key not in self.magnitudes:
            self.magnitudes[key] = (_max_magnitude(t), t)  # keeps t alive, so its id stays unique
        return self.magnitudes[key][0]

    def _out_of_range_constant(self, node) -> TensorProto | None:
        """The value of a float32 Constant node that float16 cannot hold (else None)."""
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or self.target != TensorProto.FLOAT16:
            return None
        for a in node.attribute:
            if a.name == "value" and a.t.data_type == TensorProto.FLOAT and _max_magnitude(a.t) > self.clamp[1]:
                return a.t
        return None

    def _block_reason(self, node, schema, frozen: bool) -> str | None:
        if frozen:
            return "inside a float32 subgraph"
        if node.op_type in self.op_block:
            return f"op type {node.op_type} is in the op block list"
        if node.name and node.name in self.node_block:
            return "node is in the node block list"
        if schema is None:
            return f"no ONNX schema for {node.domain or 'ai.onnx'}:{node.op_type} (custom op)"
        return None

    def _materialize(self, name: str, narrow: bool, scope: _Scope, made: "_GraphEdits") -> str:
        """The name of `name`'s value in the narrow type (narrow=True) or in float32: a converted
        initializer copy for a float32 initializer, else the output of a Cast added now."""
        key = (name, narrow)
        if key in made.materialized:
            return made.materialized[key]
        owner = scope.owner(name)
        tag = self.narrow_name if narrow else "float"
        new = self.fresh(f"{name}_{'fp16' if self.target == TensorProto.FLOAT16 else 'bf16'}" if narrow
                         else f"{name}_fp32")
        if narrow and owner is not None and name in owner.big_constants:
            made.nodes.append(helper.make_node("Constant", [], [new], name=self.fresh(f"{name}_{tag}"), value=lower_tensor(
                owner.big_constants[name], self.target, *self.clamp)))
            made.cast_outputs[new] = (name, narrow)
        elif narrow and owner is not None and name in owner.initializers:
            made.graph.initializer.append(lower_tensor(owner.initializers[name], self.target, *self.clamp,
                                                       name=new))
            if owner is scope:
                made.twins[new] = name
            self.report.converted_initializers += 1
        else:
            to = self.target if narrow else TensorProto.FLOAT
            made.nodes.append(helper.make_node("Cast", [name], [new], name=self.fresh(f"{name}_cast_to_{tag}"),
                                               to=to))
            made.cast_outputs[new] = (name, narrow)
            self.report.casts += 1
        made.materialized[key] = new
        return new

    def _outputs(self, g, scope: _Scope, made: "_GraphEdits", narrow_io: bool, keep: bool) -> None:
        """Each graph output in the type the graph declares: narrow for float32 outputs when
        `narrow_io`, the declared type when `keep` (top graph) or when frozen."""
        for vi in g.output:
            t = scope.type_of(vi.name) or type_str(vi.type)
            if not is_float(t):
                continue
            want = narrow_io and not keep
            if want:
                lower_type_proto(vi.type, self.target)
            if scope.is_narrow(vi.name) == want:
                continue
            if keep or scope.parent is None:
                # The top graph's output names are public: the producer gets a new name and a
                # Cast writes the declared name.
                inner = self.fresh(f"{vi.name}_{self.narrow_name if scope.is_narrow(vi.name) else 'float'}")
                rename_definition(g, vi.name, inner)
                rename_uses(g, {vi.name: inner})
                made.cast_outputs[inner] = (vi.name, scope.is_narrow(vi.name))
                made.cast_outputs[vi.name] = (vi.name, want)
                g.node.append(helper.make_node("Cast", [inner], [vi.name], to=self.target if want else TensorProto.FLOAT,
                                               name=self.fresh(f"{vi.name}_cast_to_output")))
                self.report.casts += 1
            else:
                made.nodes = list(g.node)
                vi.name = self._materialize(vi.name, want, scope, made)
                del g.node[:]
                g.node.extend(made.nodes)

    def _value_info(self, g, scope: _Scope, made: "_GraphEdits") -> None:
        """value_info follows the new types; Cast outputs get an entry shaped like their source."""
        shapes = {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}
        for vi in g.value_info:
            if scope.narrow.get(vi.name):
                lower_type_proto(vi.type, self.target)
        outputs = {vi.name for vi in g.output}
        for new, (src, narrow) in made.cast_outputs.items():
            if new in outputs or new in shapes and new != src:
                continue
            base = shapes.get(src) or shapes.get(new)
            if base is None or tensor_type(base.type) is None:
                continue
            vi = g.value_info.add()
            vi.CopyFrom(base)
            vi.name = new
            vi.type.tensor_type.elem_type = self.target if narrow else TensorProto.FLOAT

    def _settle_initializers(self, g, made: "_GraphEdits") -> None:
        """A converted copy takes its original's name once nothing reads the float32 original."""
        if not made.twins:
            return
        used = proto_reads(g, set())
        renames = {new: old for new, old in made.twins.items() if old not in used}
        if not renames:
            return
        dropped = set(renames.values())
        kept = [t for t in g.initializer if t.name not in dropped]
        for t in kept:
            t.name = renames.get(t.name, t.name)
        del g.initializer[:]
        g.initializer.extend(kept)
        rename_uses(g, renames)


@dataclasses.dataclass
class _Decision:
    reason: str | None                # why the node keeps float32; None: it runs narrow
    want: list[bool]                  # input i is wanted narrow
    out_narrow: list[bool]            # output j is narrow
    types: list[str | None]           # original output types


class _GraphEdits:
    """Per-graph bookkeeping of one conversion: the node list being built, Casts and copies made."""

    def __init__(self, g):
        self.graph = g
        self.nodes: list = []
        self.materialized: dict = {}
        self.cast_outputs: dict[str, tuple[str, bool]] = {}
        self.twins: dict[str, str] = {}


def _max_magnitude(t: TensorProto) -> float:
    a = numpy_helper.to_array(t)
    finite = np.abs(a[np.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0


def _control_flow_output_types(node, out_types):
    """Original output types of If/Loop/Scan from their body's outputs, where value_info has none."""
    subs = list(proto_subgraphs(node))
    body_out = [type_str(vi.type) for vi in subs[0].output]
    skip = 1 if node.op_type == "Loop" else 0  # a Loop body's first output is its condition
    return [t or (body_out[j + skip] if j + skip < len(body_out) else None) for j, t in enumerate(out_types)]


def convert_model(model: onnx.ModelProto, target: int = TensorProto.FLOAT16, *,
                  min_positive_val: float = FLOAT16_MIN_POSITIVE, max_finite_val: float = FLOAT16_MAX_FINITE,
                  keep_io_types: bool = False, op_block_list=None, node_block_list=None,
                  copy_model: bool = True) -> tuple[onnx.ModelProto, ConversionReport]:
    """`model` converted to `target` (FLOAT16 or BFLOAT16) by the rules of this module's
    docstring, and a report of what stayed float32."""
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, not {type(model).__name__}")
    if target not in TARGET_DTYPES:
        raise ValueError(f"target must be TensorProto.FLOAT16 or TensorProto.BFLOAT16, not {target}")
    if not 0 < min_positive_val < max_finite_val:
        raise ValueError(f"need 0 < min_positive_val < max_finite_val, got {min_positive_val} and {max_finite_val}")
    if copy_model:
        model = copy.deepcopy(model)
    model = with_types(model)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    conv = _Converter(target, min_positive_val, max_finite_val,
                      DEFAULT_OP_BLOCK_LIST if op_block_list is None else op_block_list,
                      node_block_list or (), proto_names(model.graph, set()), opsets)
    conv.graph(model.graph, None, narrow_io=not keep_io_types, frozen=False, keep_outputs=keep_io_types)
    return model, conv.report
