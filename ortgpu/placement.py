"""Which provider runs a node: the one answer the partitioner, every fusion pass and the
NHWC layout pass ask for.

Providers come in priority order.  A node goes to the first provider that has a kernel
for it (op, domain, opset), whose ``accepts`` takes it (the element types the kernel
declares, plus what the provider adds), and, for a device provider, whose arrays can hold
every typed input and output the kernel does not read on the host
(``ExecutionProvider.holds``).  The partitioner asks first with ``shape_computation=True``
for nodes its shape rule keeps on the host (ortgpu.partition); that only moves the
question to the host provider.
"""
from __future__ import annotations

import dataclasses

from ortgpu.errors import NotImplemented
from ortgpu.graph import Graph, Node
from ortgpu.providers.registry import KernelDef, schema_for

HOST = "cpu"  # the device of host (NumPy) arrays

# Inputs read only for their metadata (shape): used wherever they live, never copied.
METADATA_INPUTS = {"Shape": (0,), "Size": (0,)}

def host_inputs(node: Node, kernel: KernelDef | None = None) -> tuple[int, ...]:
    """Indices of the inputs of `node` that its kernel reads on the host (the kernel's
    ``host_inputs`` declaration)."""
    return tuple(kernel.host_inputs) if kernel is not None else ()


def metadata_inputs(node: Node) -> tuple[int, ...]:
    return () if node.domain else METADATA_INPUTS.get(node.op_type, ())


@dataclasses.dataclass(frozen=True)
class Choice:
    """A node's provider and kernel, and the rule that chose them ("shape" or "priority")."""
    provider: object
    kernel: KernelDef
    rule: str


def node_types(node: Node, types: dict) -> tuple[list, list]:
    """The onnx TypeProtos of a node's inputs and outputs (None where unknown or absent)."""
    return ([types.get(x) if x else None for x in node.inputs],
            [types.get(x) if x else None for x in node.outputs])


def runs(provider, node: Node, types: dict) -> KernelDef | None:
    """`provider`'s kernel for `node` when the provider takes the node, else None."""
    k = provider.kernel_for(node.op_type, node.domain, node.opset)
    if k is None:
        return None
    in_types, out_types = node_types(node, types)
    if not provider.accepts(node, k, in_types, out_types):
        return None
    if provider.device != HOST:
        skip = set(host_inputs(node, k)) | set(metadata_inputs(node))
        if not all(provider.holds(tp) for i, tp in enumerate(in_types) if tp is not None and i not in skip):
            return None
        if not all(provider.holds(tp) for tp in out_types if tp is not None):
            return None
    return k


def choose(node: Node, providers, types: dict, shape_computation: bool = False) -> Choice | None:
    """The provider that runs `node` (given the graph's value types), or None when none does.
    A shape computation goes to the first host provider that runs it, if any."""
    providers = list(providers)
    if shape_computation:
        host = next((p for p in providers if p.device == HOST), None)
        k = runs(host, node, types) if host is not None else None
        if k is not None:
            return Choice(host, k, "shape")
    for p in providers:
        k = runs(p, node, types)
        if k is not None:
            return Choice(p, k, "priority")
    return None


def provider_of(node: Node, graph: Graph, providers):
    """The provider that would run `node` of `graph`, or None."""
    c = choose(node, providers, graph.types)
    return c.provider if c is not None else None


def require(node: Node, providers, types: dict, shape_computation: bool = False) -> Choice:
    """``choose``, or onnxruntime's NotImplemented naming the node when no provider runs it."""
    c = choose(node, providers, types, shape_computation)
    if c is not None:
        return c
    schema = schema_for(node.op_type, node.opset, node.domain)
    if schema is None:
        raise NotImplemented(
            f"Could not find an implementation for {node.op_type}({node.opset}) node with name "
            f"'{node.name}': onnx defines no op '{node.op_type}' in domain "
            f"'{node.domain or 'ai.onnx'}' at opset {node.opset}")
    raise NotImplemented(
        f"Could not find an implementation for {node.op_type}({schema.since_version}) node with "
        f"name '{node.name}' (domain '{node.domain or 'ai.onnx'}', opset {node.opset})")
