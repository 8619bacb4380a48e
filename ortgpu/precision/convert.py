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
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from ortgpu.dtypes import elem_name, type_str
from ortgpu.precision.attributes import narrow_typed_attributes
from ortgpu.precision.block_lists import DEFAULT_OP_BLOCK_LIST
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


def _subgraphs(node):
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def _all_names(g: onnx.GraphProto, out: set) -> set:
    """Every value, node and initializer name of `g` and its subgraphs."""
    out.update(vi.name for vi in list(g.input) + list(g.output) + list(g.value_info))
    out.update(t.name for t in g.initializer)
    for n in g.node:
        out.add(n.name)
        out.update(n.input)
        out.update(n.output)
        for sub in _subgraphs(n):
            _all_names(sub, out)
    return out


def _rename_uses(g: onnx.GraphProto, renames: dict[str, str]) -> None:
    """Every read of a name in `renames` in `g` and its subgraphs (node inputs, subgraph
    outputs) reads its new name instead."""
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in renames:
                n.input[i] = renames[name]
        for sub in _subgraphs(n):
            _rename_uses(sub, renames)
            for vi in sub.output:
                if vi.name in renames:
                    vi.name = renames[vi.name]


def _used_names(g: onnx.GraphProto, out: set) -> set:
    """Names read by the nodes of `g` and its subgraphs, or given out as their outputs."""
    for n in g.node:
        out.update(n.input)
        for sub in _subgraphs(n):
            out.update(vi.name for vi in sub.output)
            _used_names(sub, out)
    out.update(vi.name for vi in g.output)
    return out


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
        in_types = [scope.type_of(n) if n else None for n in node.input]
        out_types = [type_str(declared[o].type) if o in declared else None for o in node.output]
        subs = list(_subgraphs(node))
        if subs and not any(out_types):
            out_types = _control_flow_output_types(node, out_types)
        schema = schema_for(node.op_type, self.opsets.get(node.domain, 1), node.domain)
        reason = self._block_reason(node, schema, frozen)
        big = self._out_of_range_constant(node) if reason is None else None
        if big is not None:
            scope.big_constants[node.output[0]] = big
            reason = "its value exceeds the float16 range; consumers get a clamped copy where they need one"
        too_big = self._out_of_range(node, scope)
        plan = plan_node(schema, in_types, out_types, self.narrow_name, too_big) if schema is not None else None
        if reason is None:
            clamped = [node.input[i] for i, big in enumerate(too_big) if big and plan.lower_inputs[i]]
            if clamped and node.op_type not in _VALUE_PICKING_OPS:
                # clamping would change the arithmetic (a BatchNormalization variance of 1e8)
                reason = f"input '{clamped[0]}' is a constant beyond the float16 range"
        if reason is None:
            if subs and (plan.lower_inputs != [is_float(t) for t in in_types]
                         or any(is_float(t) and j not in plan.attribute_typed and not plan.lower_outputs[j]
                                for j, t in enumerate(plan.output_types))):
                reason = f"its schema does not take {self.narrow_name} for every float input and output"
        if reason is not None:
            if not frozen:
                self.report.kept_float32.append((node.name, node.op_type, reason))
            want = [False] * len(node.input)
            out_narrow = [False] * len(node.output)
            types = plan.output_types if plan is not None else out_types
        elif (not any(plan.lower_inputs) and not any(plan.lower_outputs) and not plan.attribute_typed
              and any(map(is_float, in_types + plan.output_types))):
            self.report.kept_float32.append((node.name, node.op_type, f"its schema (opset {schema.since_version}) "
                                             f"takes no {self.narrow_name} here"))
            want, out_narrow, types = [False] * len(node.input), [False] * len(node.output), plan.output_types
        else:
            self.report.narrow_nodes += 1
            want = plan.lower_inputs
            out_narrow = list(plan.lower_outputs)
            types = plan.output_types
            for j in plan.attribute_typed:
                out_narrow[j] = bool(subs) or narrow_typed_attributes(
                    node, self.target, bool(want and want[0]), *self.clamp)
        for i, name in enumerate(node.input):
            if name and is_float(scope.type_of(name)) and scope.is_narrow(name) != want[i]:
                node.input[i] = self._materialize(name, want[i], scope, made)
        for sub in subs:
            self.graph(sub, scope, narrow_io=reason is None, frozen=reason is not None)
        for j, name in enumerate(node.output):
            if name:
                scope.types[name] = types[j]
                scope.narrow[name] = out_narrow[j]

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
                _rename_definition(g, vi.name, inner)
                _rename_uses(g, {vi.name: inner})
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
            if base is None or base.type.WhichOneof("value") != "tensor_type":
                continue
            vi = g.value_info.add()
            vi.CopyFrom(base)
            vi.name = new
            vi.type.tensor_type.elem_type = self.target if narrow else TensorProto.FLOAT

    def _settle_initializers(self, g, made: "_GraphEdits") -> None:
        """A converted copy takes its original's name once nothing reads the float32 original."""
        if not made.twins:
            return
        used = _used_names(g, set())
        renames = {new: old for new, old in made.twins.items() if old not in used}
        if not renames:
            return
        dropped = set(renames.values())
        kept = [t for t in g.initializer if t.name not in dropped]
        for t in kept:
            t.name = renames.get(t.name, t.name)
        del g.initializer[:]
        g.initializer.extend(kept)
        _rename_uses(g, renames)


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


def _rename_definition(g, old: str, new: str) -> None:
    """The node output or initializer of `g` named `old` is renamed `new`."""
    for n in g.node:
        for j, name in enumerate(n.output):
            if name == old:
                n.output[j] = new
                return
    for t in g.initializer:
        if t.name == old:
            t.name = new
            return
    # a graph input passed straight through: a Cast reads it under its own name
    raise ValueError(f"graph output '{old}' is a graph input of another type; cannot convert it")


def _control_flow_output_types(node, out_types):
    """Original output types of If/Loop/Scan from their body's outputs, where value_info has none."""
    subs = list(_subgraphs(node))
    body_out = [type_str(vi.type) for vi in subs[0].output]
    skip = 1 if node.op_type == "Loop" else 0  # a Loop body's first output is its condition
    return [t or (body_out[j + skip] if j + skip < len(body_out) else None) for j, t in enumerate(out_types)]


def _with_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with value_info for its values when some node output lacks one.  Shape inference
    runs on a copy whose large initializers carry no data (it needs their types and shapes
    only), which spares serializing the weights; the nodes (subgraph value_info) come back."""
    g = model.graph
    known = {vi.name for vi in list(g.value_info) + list(g.output)}
    if all(o in known for n in g.node for o in n.output if o):
        return model
    skeleton = onnx.ModelProto()
    _copy_without_weights(model, skeleton)
    inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    del g.value_info[:]
    g.value_info.extend(inferred.graph.value_info)
    del g.node[:]
    g.node.extend(inferred.graph.node)
    return model


def _copy_without_weights(model: onnx.ModelProto, out: onnx.ModelProto) -> None:
    for field in ("ir_version", "opset_import", "functions"):
        if field == "ir_version":
            out.ir_version = model.ir_version
        else:
            getattr(out, field).extend(getattr(model, field))
    g, sg = model.graph, out.graph
    sg.name = g.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(sg, field).extend(getattr(g, field))
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and (len(t.raw_data) > 4096 or len(t.float_data) > 1024):
            stub = sg.initializer.add()
            stub.name, stub.data_type = t.name, t.data_type
            stub.dims.extend(t.dims)
        else:
            sg.initializer.append(t)


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
    model = _with_types(model)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    conv = _Converter(target, min_positive_val, max_finite_val,
                      DEFAULT_OP_BLOCK_LIST if op_block_list is None else op_block_list,
                      node_block_list or (), _all_names(model.graph, set()), opsets)
    conv.graph(model.graph, None, narrow_io=not keep_io_types, frozen=False, keep_outputs=keep_io_types)
    return model, conv.report
