"""Compile a Graph into a flat plan of steps and run it.

Each step holds the kernel, its context, the slots of its inputs and outputs, its parsed
attributes and the slots whose last use it is (released right after it runs).  Values
live in a list indexed by slot; a run copies the template list that already holds the
initializers.  Subgraphs (If, Loop, Scan, SequenceMap) are plans of their own, bound at
run time to the outer-scope values they read.
"""
from __future__ import annotations

import inspect
import operator

import numpy as np

from ortgpu.errors import Fail, InvalidGraph, NotImplemented, RuntimeException, _OrtError
from ortgpu.functions import expand, function_body
from ortgpu.graph import Graph, Node, attribute_value
from ortgpu.providers.registry import KernelContext, schema_for

_MAX_EXPANSION_DEPTH = 8


class BoundGraph:
    """A subgraph attribute as a kernel sees it: call it with its inputs, get its outputs."""

    __slots__ = ("plan", "outer")

    def __init__(self, plan: "Plan", outer: dict):
        self.plan = plan
        self.outer = outer

    @property
    def input_names(self) -> list[str]:
        return self.plan.input_names

    @property
    def output_names(self) -> list[str]:
        return self.plan.output_names

    def __call__(self, *inputs):
        return self.plan.run(list(inputs), self.outer)


class Step:
    __slots__ = ("fn", "ctx", "ins", "outs", "attrs", "frees", "node", "provider",
                 "subplans", "outer_slots", "single", "unary", "gather")

    def __init__(self, fn, ctx, ins, outs, attrs, node, provider, subplans, outer_slots):
        self.fn, self.ctx, self.ins, self.outs, self.attrs = fn, ctx, ins, outs, attrs
        self.node, self.provider = node, provider
        self.subplans = subplans        # [(attribute name, Plan | [Plan])]
        self.outer_slots = outer_slots  # [(name, slot)] the subgraphs read from this scope
        self.single = len(outs) == 1
        self.frees = ()
        # Fast argument fetch: one slot read, or a C-level itemgetter returning a tuple.
        self.unary = len(ins) == 1 and ins[0] >= 0
        self.gather = _make_gather(ins)


def _make_gather(ins):
    """vals -> tuple of input values (None where the optional input is omitted)."""
    if not ins:
        return lambda vals: ()
    if any(i < 0 for i in ins):
        return lambda vals: tuple(vals[i] if i >= 0 else None for i in ins)
    if len(ins) == 1:
        i0 = ins[0]
        return lambda vals: (vals[i0],)
    return operator.itemgetter(*ins)


def _accepted_params(fn):
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _with_schema_defaults(node: Node, opsets) -> dict:
    attrs = dict(node.attrs)
    schema = schema_for(node.op_type, node.opset, node.domain)
    if schema is not None:
        for name, a in schema.attributes.items():
            if name not in attrs and a.default_value.type != 0:
                attrs[name] = attribute_value(a.default_value, opsets, {})
    return attrs


def assign_kernel(node: Node, graph: Graph, providers):
    """The first provider that has a kernel for `node` and accepts it: (provider, KernelDef)."""
    in_types = [graph.types.get(x) if x else None for x in node.inputs]
    for p in providers:
        k = p.kernel_for(node.op_type, node.domain, node.opset)
        if k is not None and p.accepts(node, k, in_types):
            return p, k
    return None, None


def expand_functions(graph: Graph, providers, depth: int = 0) -> None:
    """Replace nodes no provider implements by their ONNX function bodies, where they have one."""
    new_nodes = []
    changed = False
    for node in graph.nodes:
        prov, k = assign_kernel(node, graph, providers)
        if k is None:
            in_types = [graph.types.get(x) if x else None for x in node.inputs]
            fp = function_body(node, in_types)
            if fp is not None and depth < _MAX_EXPANSION_DEPTH:
                body = expand(node, fp, graph.opsets, graph.types)
                sub = Graph(graph.name, body, [], [], {}, graph.types, graph.opsets)
                expand_functions(sub, providers, depth + 1)
                new_nodes.extend(sub.nodes)
                changed = True
                continue
        new_nodes.append(node)
    if changed:
        graph.nodes = new_nodes


class Plan:
    """A graph compiled for a list of providers."""

    def __init__(self, graph: Graph, providers, outer_names=(), is_subgraph: bool = False):
        self.graph = graph
        expand_functions(graph, providers)
        self.input_names = [v.name for v in graph.inputs]
        self.output_names = [v.name for v in graph.outputs]
        slots: dict[str, int] = {}

        def slot(name):
            if name not in slots:
                slots[name] = len(slots)
            return slots[name]

        for n in outer_names:
            slot(n)
        for n in self.input_names:
            slot(n)
        for n in graph.initializers:
            slot(n)
        self.steps: list[Step] = []
        for node in graph.nodes:
            self.steps.append(self._compile_node(node, graph, providers, slot))
        self.slots = slots
        self.outer_slots = [(n, slots[n]) for n in outer_names]
        self.input_slots = [slots[n] for n in self.input_names]
        self.output_slots = [slot(n) for n in self.output_names]
        self.template = [None] * len(slots)
        for n, v in graph.initializers.items():
            self.template[slots[n]] = v
        self._plan_lifetimes(is_subgraph)

    def _compile_node(self, node: Node, graph: Graph, providers, slot) -> Step:
        prov, kdef = assign_kernel(node, graph, providers)
        if kdef is None:
            schema = schema_for(node.op_type, node.opset, node.domain)
            if schema is None:
                raise NotImplemented(
                    f"Could not find an implementation for {node.op_type}({node.opset}) node with name "
                    f"'{node.name}': onnx defines no op '{node.op_type}' in domain "
                    f"'{node.domain or 'ai.onnx'}' at opset {node.opset}")
            raise NotImplemented(
                f"Could not find an implementation for {node.op_type}({schema.since_version}) node with "
                f"name '{node.name}' (domain '{node.domain or 'ai.onnx'}', opset {node.opset})")
        attrs = _with_schema_defaults(node, graph.opsets)
        accepted = _accepted_params(kdef.fn)
        if accepted is not None:
            for name in list(attrs):
                if name not in accepted:
                    if name in node.attrs and not isinstance(attrs[name], Graph):
                        raise NotImplemented(f"{node.describe()}: attribute '{name}' is not supported "
                                             f"by the {prov.name} kernel")
                    if name not in node.attrs:
                        del attrs[name]
        subplans = []
        outer: set[str] = set()
        for name, v in list(attrs.items()):
            if isinstance(v, Graph):
                outer |= v.outer_names()
                subplans.append((name, None, v))
            elif isinstance(v, list) and v and isinstance(v[0], Graph):
                for g in v:
                    outer |= g.outer_names()
                subplans.append((name, "list", v))
        compiled = []
        for name, kind, v in subplans:
            attrs.pop(name)
            if kind is None:
                compiled.append((name, Plan(v, providers, sorted(v.outer_names()), True)))
            else:
                compiled.append((name, [Plan(g, providers, sorted(g.outer_names()), True) for g in v]))
        ctx = KernelContext(
            prov.xp, prov.name, node.name, node.op_type, node.opset, len(node.outputs),
            tuple(bool(o) for o in node.outputs),
            tuple(graph.types.get(x) if x else None for x in node.inputs),
            tuple(graph.types.get(x) if x else None for x in node.outputs))
        ins = tuple(slot(x) if x else -1 for x in node.inputs)
        outs = tuple(slot(x) if x else -1 for x in node.outputs)
        outer_slots = [(n, slot(n)) for n in sorted(outer)]
        return Step(kdef.fn, ctx, ins, outs, attrs, node, prov, compiled, outer_slots)

    def _plan_lifetimes(self, is_subgraph: bool) -> None:
        """Release each value after the step that reads it last (graph outputs are kept)."""
        keep = set(self.output_slots)
        last: dict[int, int] = {}
        for i, st in enumerate(self.steps):
            for s in st.ins:
                if s >= 0:
                    last[s] = i
            for _, s in st.outer_slots:
                last[s] = i
            for s in st.outs:
                if s >= 0:
                    last.setdefault(s, i)  # an output nobody reads dies where it is born
        frees: dict[int, list[int]] = {}
        for s, i in last.items():
            if s not in keep:
                frees.setdefault(i, []).append(s)
        for i, st in enumerate(self.steps):
            st.frees = tuple(frees.get(i, ()))

    def run(self, inputs: list, outer: dict | None = None) -> list:
        """Run with graph inputs by position (and outer-scope values by name); outputs by position."""
        vals = self.template.copy()
        if outer:
            for name, s in self.outer_slots:
                vals[s] = outer[name]
        for s, v in zip(self.input_slots, inputs):
            vals[s] = v
        st = None
        try:
            # inf and NaN are values in ONNX: no floating-point warnings from NumPy during a run
            with np.errstate(all="ignore"):
                for st in self.steps:
                    if st.subplans:
                        res = self._call_with_subgraphs(st, vals)
                    elif st.unary:
                        res = st.fn(st.ctx, vals[st.ins[0]], **st.attrs)
                    else:
                        res = st.fn(st.ctx, *st.gather(vals), **st.attrs)
                    if st.single:
                        vals[st.outs[0]] = res if type(res) is not tuple else res[0]
                    else:
                        if type(res) is not tuple:
                            raise Fail(f"kernel returned {type(res).__name__}, expected a tuple of "
                                       f"{len(st.outs)} outputs")
                        for s, r in zip(st.outs, res):
                            if s >= 0:
                                vals[s] = r
                    for f in st.frees:
                        vals[f] = None
        except _OrtError as e:
            if st is None or "while running" in e.message:
                raise
            raise type(e)(f"Non-zero status code returned while running {st.node.op_type} node. "
                          f"Name:'{st.node.name}' Status Message: {e.message}") from e
        except Exception as e:  # a kernel failed: name the node, as onnxruntime does
            if st is None:
                raise
            raise RuntimeException(f"Non-zero status code returned while running {st.node.op_type} node. "
                                   f"Name:'{st.node.name}' Status Message: {type(e).__name__}: {e}") from e
        return [vals[s] for s in self.output_slots]

    @staticmethod
    def _call_with_subgraphs(st: Step, vals: list):
        attrs = dict(st.attrs)
        scope = {n: vals[s] for n, s in st.outer_slots}
        for name, p in st.subplans:
            attrs[name] = (BoundGraph(p, scope) if not isinstance(p, list)
                           else [BoundGraph(q, scope) for q in p])
        return st.fn(st.ctx, *st.gather(vals), **attrs)

    def placement(self) -> list[tuple[str, str, str]]:
        """(node name, op type, provider) per step, in execution order."""
        return [(st.node.name, st.node.op_type, st.provider.name) for st in self.steps]
