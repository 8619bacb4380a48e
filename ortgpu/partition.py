"""Partition a graph over execution providers and insert the copies between devices.

Placement.  ``ortgpu.placement.choose`` decides which provider runs each node (the same
function the fusion passes ask).  The partitioner adds the *shape rule*: small integer
shape computations stay on the host provider (the first provider whose device is
``"cpu"``) so that they never force a device sync.  Precisely, a node of the default
domain is a shape computation when

* it is ``Shape`` or ``Size`` (they read only the metadata of their input, which is
  therefore never copied, wherever it lives); or
* it is a ``Constant`` whose value is int32, int64 or bool with at most
  ``SMALL_SHAPE_ELEMENTS`` elements; or
* its op is in ``SHAPE_OPS``, it has at least one input, every present input is a
  *host shape value*, every output has a known int32/int64/bool element type, and no
  output is known (from shape inference) to exceed ``SMALL_SHAPE_ELEMENTS`` elements;
  for the ops that can make large tensors from small ones (``GENERATOR_OPS``:
  ConstantOfShape, Expand, Tile, Range) the output size must be known and small.

A *host shape value* is an int32/int64/bool tensor that is an initializer with at most
``SMALL_SHAPE_ELEMENTS`` elements, an output of a shape computation, the iteration
number or condition input of a Loop body, or an outer-scope value that is a host shape value outside.

Host inputs.  Some inputs of device nodes are read on the host by their kernels (a
Reshape's shape, Slice's starts, an If's condition, a Loop's trip count, ...), as
onnxruntime's CUDA kernels declare them CPU inputs (each kernel's ``host_inputs`` declaration).  Such
an input is delivered as a NumPy array, so a shape computed on the CPU reaches a device
Reshape without any copy.

Copies.  Every value has a home device (graph inputs: where the caller delivers them,
the host for ``run()``; initializers: the host; node outputs: their provider's
device).  Where a consumer needs a value on another device, one copy step per (value,
target device) is placed right before the first such consumer; later consumers on that
device share it.  Initializers needed on a device are copied there once when the plan
is built (``Partition.init_copies``), not per run.  Graph outputs go to the devices the
caller asks for (the host for ``run()``) by copy steps at the end.  A subgraph
(If/Loop/Scan/SequenceMap bodies) is partitioned on its own: its inputs arrive on the
device of the node that runs it (a Loop's iteration number and condition on the host),
its outputs are delivered there (a Loop body's condition output on the host), and each
outer-scope value it reads is *demanded* on the devices its nodes need it, so that the
enclosing graph copies it once, before the control-flow node, not once per iteration.
Sequences and optionals are copied element by element.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.placement import HOST, host_inputs, metadata_inputs, require

ANY = "any"   # an input read for its metadata only: used wherever it lives

SMALL_SHAPE_ELEMENTS = 64

SHAPE_DTYPES = frozenset({"int64", "int32", "bool"})

SHAPE_OPS = frozenset({
    "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Reshape", "Identity", "Flatten",
    "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Max", "Min", "Sign",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Where",
    "ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin",
    "ConstantOfShape", "Expand", "Tile", "Range",
})
GENERATOR_OPS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range"})

@dataclasses.dataclass
class Placed:
    """A node on its provider; keys name the slots of its inputs and outputs in this scope
    (a value's name at its home device, ``(name, device)`` for a copy or an outer value)."""
    node: Node
    provider: object
    kernel: object
    in_keys: list
    out_keys: list
    rule: str                  # "shape" when the shape rule placed it, else "priority"
    subparts: list             # [(attribute name, Partition | [Partition])]
    outer_binding: list        # [(key in the subgraph's scope, key in this scope)]


@dataclasses.dataclass
class Copy:
    """A copy step: `value` from device `src` to device `dst`."""
    value: str
    src: str
    dst: str
    provider: object           # the device provider (source for MemcpyToHost, target otherwise)
    src_key: object
    dst_key: object
    fn: object                 # value -> copied value

    @property
    def op_type(self) -> str:
        return "MemcpyToHost" if self.dst == HOST else "MemcpyFromHost"

    @property
    def name(self) -> str:
        return f"{self.op_type}({self.value} -> {self.dst})"


@dataclasses.dataclass
class Partition:
    graph: Graph
    items: list                # Placed and Copy, in execution order
    input_keys: list
    output_keys: list
    outer_keys: list           # [(name, device)] outer-scope values this graph reads
    init_copies: dict          # (name, device) -> (initializer name, provider)
    host_shape: set            # names of the host shape values (for tests and logs)

    def copies(self) -> list[Copy]:
        return [it for it in self.items if isinstance(it, Copy)]


def _tensor_elem(tp):
    if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.elem_type:
        return None
    from ortgpu.dtypes import np_dtype
    try:
        return np_dtype(tp.tensor_type.elem_type).name
    except TypeError:
        return None


def _static_size(tp):
    """Element count from a fully static shape, else None."""
    if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return None
    n = 1
    for d in tp.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return None
        n *= d.dim_value
    return n


def _small_int_array(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.name in SHAPE_DTYPES and a.size <= SMALL_SHAPE_ELEMENTS


def subgraph_io_devices(node: Node, g: Graph, device: str) -> tuple[list[str], list[str]]:
    """Devices of a subgraph's inputs and outputs when `node` runs on `device`."""
    n_in, n_out = len(g.inputs), len(g.outputs)
    if node.op_type == "Loop" and not node.domain:
        return ([HOST, HOST] + [device] * (n_in - 2))[:n_in], ([HOST] + [device] * (n_out - 1))[:n_out]
    return [device] * n_in, [device] * n_out


class _Partitioner:
    def __init__(self, graph: Graph, providers, input_devices, output_devices, outer_locations,
                 outer_host_shape):
        self.g = graph
        self.providers = list(providers)
        self.host_provider = next((p for p in self.providers if p.device == HOST), None)
        self.by_device = {}
        for p in self.providers:
            self.by_device.setdefault(p.device, p)
        self.inputs = [v.name for v in graph.inputs]
        self.input_set = set(self.inputs)
        self.input_devices = list(input_devices) if input_devices is not None else [HOST] * len(self.inputs)
        self.output_devices = (list(output_devices) if output_devices is not None
                               else [HOST] * len(graph.outputs))
        self.outer_loc = dict(outer_locations or {})
        self.loc: dict[str, str] = {}
        self.avail: set = set()
        self.items: list = []
        self.outer_keys: list = []
        self.init_copies: dict = {}
        self.host_shape: set[str] = set(outer_host_shape or ())

    # --- where values are, and the copies that move them ---------------------------------
    def location(self, name: str) -> str:
        if name in self.loc:
            return self.loc[name]
        return self.outer_loc.get(name, HOST)

    def key_for(self, name: str, device: str):
        """The key of `name` on `device`, adding the copy, initializer copy or outer demand."""
        if device == ANY:
            device = self.location(name)
        if name not in self.loc:  # an outer-scope value: the enclosing graph delivers it
            key = (name, device)
            if key not in self.avail:
                self.avail.add(key)
                self.outer_keys.append(key)
            return key
        src = self.loc[name]
        if src == device:
            return name
        key = (name, device)
        if key in self.avail:
            return key
        self.avail.add(key)
        if name in self.g.initializers and name not in self.input_set:
            self.init_copies[key] = (name, self._device_provider(device))
            return key
        self.items.append(self._copy(name, src, device, key))
        return key

    def _device_provider(self, device):
        p = self.by_device.get(device)
        if p is None:
            raise ValueError(f"no provider for device '{device}' (providers: "
                             f"{[q.name for q in self.providers]})")
        return p

    def _copy(self, name, src, dst, key) -> Copy:
        if dst == HOST:
            p = self._device_provider(src)
            fn = p.copy_to_host
        elif src == HOST:
            p = self._device_provider(dst)
            fn = p.copy_from_host
        else:  # between two devices, through the host
            p = self._device_provider(dst)
            out_p = self._device_provider(src)

            def fn(v, _to=out_p.copy_to_host, _from=p.copy_from_host):
                return _from(_to(v))
        return Copy(name, src, dst, p, name, key, fn)

    # --- placement --------------------------------------------------------------------------
    def is_shape_node(self, node: Node) -> bool:
        if node.domain:
            return False
        op = node.op_type
        if metadata_inputs(node):
            return True
        types = self.g.types
        if op == "Constant":
            v = node.attrs.get("value")
            if v is not None:
                return _small_int_array(v)
            if "value_int" in node.attrs:
                return True
            ints = node.attrs.get("value_ints")
            return ints is not None and len(ints) <= SMALL_SHAPE_ELEMENTS
        if op not in SHAPE_OPS:
            return False
        ins = [x for x in node.inputs if x]
        if not ins or not all(x in self.host_shape for x in ins):
            return False
        for o in node.outputs:
            if not o:
                continue
            tp = types.get(o)
            if _tensor_elem(tp) not in SHAPE_DTYPES:
                return False
            size = _static_size(tp)
            if size is None and op in GENERATOR_OPS:
                return False
            if size is not None and size > SMALL_SHAPE_ELEMENTS:
                return False
        return True

    def input_device(self, node: Node, kernel, i: int, device: str) -> str:
        if i in metadata_inputs(node):
            return ANY
        if device != HOST and i in host_inputs(node, kernel):
            return HOST
        return device

    def run(self) -> Partition:
        g = self.g
        for name, dev in zip(self.inputs, self.input_devices):
            self.loc[name] = dev
        for name, arr in g.initializers.items():
            if name not in self.loc:
                self.loc[name] = HOST
            if self.loc[name] == HOST and _small_int_array(arr):
                self.host_shape.add(name)
        for node in g.nodes:
            self.place(node)
        output_keys = [self.key_for(v.name, dev) for v, dev in zip(g.outputs, self.output_devices)]
        return Partition(g, self.items, list(self.inputs), output_keys, self.outer_keys,
                         self.init_copies, self.host_shape)

    def place(self, node: Node) -> None:
        choice = require(node, self.providers, self.g.types,
                         self.host_provider is not None and self.is_shape_node(node))
        prov, kdef, rule = choice.provider, choice.kernel, choice.rule
        dev = prov.device
        in_keys = [self.key_for(x, self.input_device(node, kdef, i, dev)) if x else None
                   for i, x in enumerate(node.inputs)]
        subparts, binding = [], []
        for attr, value in node.attrs.items():
            graphs = [value] if isinstance(value, Graph) else (
                value if isinstance(value, list) and value and isinstance(value[0], Graph) else None)
            if graphs is None:
                continue
            parts = []
            for sub in graphs:
                ins, outs = subgraph_io_devices(node, sub, dev)
                outer = sub.outer_names()
                shape_outer = {n for n in outer if n in self.host_shape}
                if node.op_type == "Loop" and not node.domain:
                    shape_outer.update(v.name for v in sub.inputs[:2])  # iteration number, condition
                part = partition(sub, self.providers, ins, outs,
                                 {n: self.location(n) for n in outer}, shape_outer)
                for key in part.outer_keys:
                    binding.append((key, self.key_for(key[0], key[1])))
                parts.append(part)
            subparts.append((attr, parts[0] if isinstance(value, Graph) else parts))
        out_keys = []
        for o in node.outputs:
            if o:
                self.loc[o] = dev
                if rule == "shape" and _tensor_elem(self.g.types.get(o)) in SHAPE_DTYPES:
                    self.host_shape.add(o)
            out_keys.append(o or None)
        seen, unique = set(), []
        for b in binding:
            if b[0] not in seen:
                seen.add(b[0])
                unique.append(b)
        self.items.append(Placed(node, prov, kdef, in_keys, out_keys, rule, subparts, unique))


def partition(graph: Graph, providers, input_devices=None, output_devices=None,
              outer_locations=None, outer_host_shape=()) -> Partition:
    """Place every node of `graph` (and of its subgraphs) and insert the copies between devices.

    `input_devices`/`output_devices` say where the graph's inputs arrive and where its
    outputs are wanted (the host by default); `outer_locations` maps the outer-scope values
    a subgraph reads to their devices outside; `outer_host_shape` names those that are
    host shape values.  Nodes no provider runs but that have a function body must have been
    expanded before (ortgpu.functions.expand_unimplemented)."""
    return _Partitioner(graph, providers, input_devices, output_devices, outer_locations,
                        outer_host_shape).run()
