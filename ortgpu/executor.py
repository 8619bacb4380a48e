"""Compile a partitioned Graph into a flat plan of steps and run it.

The partitioner (ortgpu.partition) places each node on a provider and adds copy steps
where a value crosses devices; each step then holds the kernel (or the copy), its context,
the slots of its inputs and outputs, its parsed attributes and the slots whose last use it
is (released right after it runs).  Values live in a list indexed by slot (one slot per
value and device it is needed on); a run copies the template list that already holds the
initializers (and their device copies).  Subgraphs (If, Loop, Scan, SequenceMap) are plans
of their own, bound at run time to the outer-scope values they read, keyed by
(name, device).
"""
from __future__ import annotations

import functools
import inspect
import operator
import threading

import numpy as np

from ortgpu.errors import Fail, InvalidGraph, NotImplemented, RuntimeException, _OrtError
from ortgpu.graph import Graph, Node, attrs_with_defaults
from ortgpu.partition import Copy, Partition, Placed, partition
from ortgpu.profiling.recorder import clock, step_infos, tensor_metas, type_and_shape
from ortgpu.providers.registry import KernelContext

TERMINATED = "Exiting due to terminate flag being set to true."  # onnxruntime's message


class BoundGraph:
    """A subgraph attribute as a kernel sees it: call it with its inputs, get its outputs.
    `stop` is the enclosing run's RunOptions (its terminate flag is read at every step)."""

    __slots__ = ("plan", "outer", "stop")

    def __init__(self, plan: "Plan", outer: dict, stop=None):
        self.plan = plan
        self.outer = outer
        self.stop = stop

    @property
    def input_names(self) -> list[str]:
        return self.plan.input_names

    @property
    def output_names(self) -> list[str]:
        return self.plan.output_names

    def __call__(self, *inputs):
        return self.plan.run_steps(self.plan.seed(inputs, self.outer), self.stop)


class ProfiledBoundGraph(BoundGraph):
    """A subgraph bound inside a profiled run: its steps are recorded too."""

    __slots__ = ("recorder",)

    def __init__(self, plan: "Plan", outer: dict, recorder, stop=None):
        super().__init__(plan, outer, stop)
        self.recorder = recorder

    def __call__(self, *inputs):
        return self.plan.run_profiled(list(inputs), self.recorder, self.outer, self.stop)


class Step:
    __slots__ = ("fn", "ctx", "ins", "outs", "attrs", "frees", "node", "provider",
                 "subplans", "outer_slots", "single", "unary", "gather", "fetch_outputs")

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
        self.fetch_outputs = _make_gather(tuple(s for s in outs if s >= 0))  # for the profiler


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


@functools.lru_cache(maxsize=4096)
def _accepted_params(fn):
    """The parameter names a kernel takes by keyword (None: it takes any, **kwargs)."""
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(n for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


class Plan:
    """A graph compiled for a list of providers: partitioned (ortgpu.partition), with copy steps
    between devices, into a flat list of steps.

    `input_devices`/`output_devices` say where the inputs arrive and where the outputs are
    wanted (the host by default: a top-level plan returns host values; ``partition.ANY``
    leaves an output where it is produced).  A subgraph's plan is built from its partition
    (`part`) by the enclosing plan.  Plans of one graph for other devices share the device
    copies of its initializers through `init_cache` ({(graph id, name, device): array})."""

    def __init__(self, graph: Graph, providers, is_subgraph: bool = False, *, input_devices=None,
                 output_devices=None, part: Partition | None = None, init_cache: dict | None = None):
        if part is None:
            part = partition(graph, providers, input_devices, output_devices)
        self.graph = graph
        self.partition = part
        self.input_names = [v.name for v in graph.inputs]
        self.output_names = [v.name for v in graph.outputs]
        slots: dict = {}

        def slot(key):
            if key not in slots:
                slots[key] = len(slots)
            return slots[key]

        for k in part.outer_keys:
            slot(k)
        for n in self.input_names:
            slot(n)
        for n in graph.initializers:
            slot(n)
        for k in part.init_copies:
            slot(k)
        self.steps: list[Step] = []
        for item in part.items:
            if isinstance(item, Copy):
                self.steps.append(_copy_step(item, slot))
            else:
                self.steps.append(self._compile_node(item, graph, providers, slot, init_cache))
        self.slots = slots
        self.outer_slots = [(k, slots[k]) for k in part.outer_keys]
        self.input_slots = [slots[n] for n in self.input_names]
        self.output_slots = [slot(k) for k in part.output_keys]
        self.template = [None] * len(slots)
        for n, v in graph.initializers.items():
            self.template[slots[n]] = v
        cache = init_cache if init_cache is not None else {}
        for k, (n, prov) in part.init_copies.items():  # initializers used on a device: copied once
            ck = (id(graph), n, k[1])
            if ck not in cache:
                cache[ck] = prov.copy_from_host(graph.initializers[n])
            self.template[slots[k]] = cache[ck]
        self._plan_lifetimes(is_subgraph)

    def _compile_node(self, placed: Placed, graph: Graph, providers, slot, init_cache) -> Step:
        node, prov, kdef = placed.node, placed.provider, placed.kernel
        attrs = attrs_with_defaults(node, graph.opsets)
        accepted = _accepted_params(kdef.fn)
        if accepted is not None:
            for name in list(attrs):
                if name not in accepted:
                    if name in node.attrs and not isinstance(attrs[name], Graph):
                        raise NotImplemented(f"{node.describe()}: attribute '{name}' is not supported "
                                             f"by the {prov.name} kernel")
                    if name not in node.attrs:
                        del attrs[name]
        compiled = []
        for name, sub in placed.subparts:
            attrs.pop(name, None)
            if isinstance(sub, list):
                compiled.append((name, [Plan(p.graph, providers, True, part=p, init_cache=init_cache)
                                        for p in sub]))
            else:
                compiled.append((name, Plan(sub.graph, providers, True, part=sub, init_cache=init_cache)))
        ctx = KernelContext(
            prov.xp, prov.name, node.name, node.op_type, node.opset, len(node.outputs),
            tuple(bool(o) for o in node.outputs),
            tuple(graph.types.get(x) if x else None for x in node.inputs),
            tuple(graph.types.get(x) if x else None for x in node.outputs), prov)
        ins = tuple(slot(k) if k is not None else -1 for k in placed.in_keys)
        outs = tuple(slot(k) if k is not None else -1 for k in placed.out_keys)
        outer_slots = [(sub_key, slot(key)) for sub_key, key in placed.outer_binding]
        prepare = getattr(kdef.fn, "prepare", None)
        if prepare is not None:  # work a kernel does once per node, at session creation
            prepare(ctx, **attrs)
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

    def seed(self, inputs, outer: dict | None) -> list:
        """A run's value slots: the initializers, then the outer-scope values and the inputs."""
        vals = self.template.copy()
        if outer:
            for key, s in self.outer_slots:
                vals[s] = outer[key]
        for s, v in zip(self.input_slots, inputs):
            vals[s] = v
        return vals

    def run(self, inputs: list, outer: dict | None = None, stop=None) -> list:
        """Run with graph inputs by position (and outer-scope values by name); outputs by
        position.  `stop` (a RunOptions) ends the run with Fail once its terminate flag is set."""
        # inf and NaN are values in ONNX: no floating-point warnings from NumPy during a run
        with np.errstate(all="ignore"):
            return self.run_steps(self.seed(inputs, outer), stop)

    def run_steps(self, vals: list, stop=None) -> list:
        """The steps over seeded value slots (inside the caller's np.errstate); the outputs."""
        st = None
        try:
            for st in self.steps:
                if stop is not None and stop.terminate:
                    raise Fail(TERMINATED)
                if st.subplans:
                    res = self._call_with_subgraphs(st, vals, stop=stop)
                elif st.unary:
                    res = st.fn(st.ctx, vals[st.ins[0]], **st.attrs)
                else:
                    res = st.fn(st.ctx, *st.gather(vals), **st.attrs)
                if st.single:
                    vals[st.outs[0]] = res if type(res) is not tuple else res[0]
                else:
                    _store(st, vals, res)
                for f in st.frees:
                    vals[f] = None
        except Exception as e:
            err = _node_error(st, e)
            if err is e:
                raise
            raise err from e
        return [vals[s] for s in self.output_slots]

    def run_profiled(self, inputs: list, recorder, outer: dict | None = None, stop=None) -> list:
        """``run`` with each step timed into `recorder` (ortgpu.profiling.Recorder): host time,
        the (dtype, shape) of its outputs (input shapes are known from the values' producers,
        the plan's inputs and its initializers) and the device probe's token.  A loop of its
        own, so that the unprofiled loop above carries no profiling branch."""
        infos = step_infos(self)
        probe, record, tid = recorder.probe, recorder.records.append, threading.get_native_id()
        vals = self.seed(inputs, outer)
        fed = [s for _, s in self.outer_slots] + self.input_slots
        record((self, tid, tuple(zip(fed, tensor_metas([vals[s] for s in fed])))))  # see Recorder
        st = None
        t_start = clock()
        try:
            with np.errstate(all="ignore"):
                for i, st in enumerate(self.steps):
                    if stop is not None and stop.terminate:
                        raise Fail(TERMINATED)
                    token = probe.begin(infos[i].name) if probe is not None else None
                    t0 = clock()
                    if st.subplans:
                        res = self._call_with_subgraphs(st, vals, recorder, stop)
                    elif st.unary:
                        res = st.fn(st.ctx, vals[st.ins[0]], **st.attrs)
                    else:
                        res = st.fn(st.ctx, *st.gather(vals), **st.attrs)
                    t1 = clock()
                    if probe is not None:
                        token = probe.end(token)
                    if st.single:
                        out = vals[st.outs[0]] = res if type(res) is not tuple else res[0]
                        try:
                            meta = type_and_shape(out)
                        except AttributeError:  # a sequence, a map, an empty optional
                            meta = None
                    else:
                        _store(st, vals, res)
                        meta = tensor_metas(infos[i].outputs(vals))
                    record((i, t0, t1, tid, meta, token))
                    for f in st.frees:
                        vals[f] = None
        except Exception as e:
            err = _node_error(st, e)
            if err is e:
                raise
            raise err from e
        finally:
            recorder.span("SequentialExecutor::Execute", t_start, clock())
        return [vals[s] for s in self.output_slots]

    @staticmethod
    def _call_with_subgraphs(st: Step, vals: list, recorder=None, stop=None):
        attrs = dict(st.attrs)
        scope = {key: vals[s] for key, s in st.outer_slots}

        def bind(p):
            if recorder is None:
                return BoundGraph(p, scope, stop)
            return ProfiledBoundGraph(p, scope, recorder, stop)
        for name, p in st.subplans:
            attrs[name] = bind(p) if not isinstance(p, list) else [bind(q) for q in p]
        return st.fn(st.ctx, *st.gather(vals), **attrs)

    def placement(self, include_subgraphs: bool = False, prefix: str = "") -> list[tuple[str, str, str]]:
        """(node name, op type, provider) per step, in execution order; copy steps have op type
        MemcpyToHost / MemcpyFromHost and the device provider.  With `include_subgraphs`, the
        steps of subgraphs follow their node, named 'node/attribute/step' (a list attribute
        adds the index)."""
        out = []
        for st in self.steps:
            out.append((prefix + st.node.name, st.node.op_type, st.provider.name))
            if include_subgraphs:
                for attr, sub in st.subplans:
                    subs = sub if isinstance(sub, list) else [sub]
                    for i, p in enumerate(subs):
                        tag = f"{attr}[{i}]" if isinstance(sub, list) else attr
                        out.extend(p.placement(True, f"{prefix}{st.node.name}/{tag}/"))
        return out

    def describe(self, indent: str = "") -> list[str]:
        """The placement as text lines (the verbose log): steps, subgraphs indented, and the
        initializers copied to a device when the plan was built."""
        rule_of = {id(st): getattr(it, "rule", "copy") for st, it in zip(self.steps, self.partition.items)}
        lines = [f"{indent}initializer {n} copied to {k[1]} once" for k, (n, _) in self.partition.init_copies.items()]
        for st in self.steps:
            rule = " (shape computation)" if rule_of.get(id(st)) == "shape" else ""
            lines.append(f"{indent}{st.node.op_type} '{st.node.name}' -> {st.provider.name}{rule}")
            for attr, sub in st.subplans:
                for p in (sub if isinstance(sub, list) else [sub]):
                    lines.append(f"{indent}  {attr}:")
                    lines.extend(p.describe(indent + "    "))
        return lines


def _store(st: Step, vals: list, res) -> None:
    """Put a multi-output kernel's result into its output slots."""
    if type(res) is not tuple:
        raise Fail(f"kernel returned {type(res).__name__}, expected a tuple of {len(st.outs)} outputs")
    for s, r in zip(st.outs, res):
        if s >= 0:
            vals[s] = r


def _node_error(st: Step | None, e: Exception) -> Exception:
    """The exception to raise for `e` from step `st`: onnxruntime's message naming the node,
    or `e` itself when there is no step or the message names one already."""
    if st is None:
        return e
    where = f"Non-zero status code returned while running {st.node.op_type} node. Name:'{st.node.name}'"
    if isinstance(e, _OrtError):
        if "while running" in e.message:
            return e
        return type(e)(f"{where} Status Message: {e.message}")
    return RuntimeException(f"{where} Status Message: {type(e).__name__}: {e}")


def _copy_step(item: Copy, slot) -> Step:
    """A copy between devices as a step: a node with onnxruntime's Memcpy op types."""
    node = Node(item.name, item.op_type, "", 1, [item.value], [item.value], {})
    fn = item.fn

    def copy(ctx, value):
        return fn(value)
    return Step(copy, None, (slot(item.src_key),), (slot(item.dst_key),), {}, node, item.provider, [], [])
