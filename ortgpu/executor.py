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
from ortgpu.providers.constant_forms import ConstantForms
from ortgpu.providers.registry import KernelContext

TERMINATED = "Exiting due to terminate flag being set to true."  # onnxruntime's message


class BoundGraph:
    """A subgraph attribute as a kernel sees it: call it with its inputs, get its outputs.

    Bound once per run of its node to the enclosing run's value list (`outer_vals`) and the
    pairs (slot here, slot there) of the outer-scope values it reads.  Its own value list
    (initializers and outer-scope values) is seeded on the first call and reused by every
    later call, a Loop's iterations or a Scan's steps: a call only sets the inputs (the plan
    never releases the slots the seed fills).  `stop` is the enclosing run's RunOptions (its
    terminate flag is read at every step and every iteration)."""

    __slots__ = ("plan", "outer_vals", "pairs", "stop", "_vals")

    def __init__(self, plan: "Plan", outer_vals: list, pairs, stop=None):
        self.plan = plan
        self.outer_vals = outer_vals
        self.pairs = pairs
        self.stop = stop
        self._vals = None

    @property
    def input_names(self) -> list[str]:
        return self.plan.input_names

    @property
    def output_names(self) -> list[str]:
        return self.plan.output_names

    def reads_input(self, k: int) -> bool:
        """Whether input `k` is used at all (read by a step or passed to an output): a Loop
        builds no iteration-number tensor for a body that ignores it."""
        return self.plan.used_inputs[k]

    def _seeded(self) -> list:
        vals = self._vals
        if vals is None:
            vals = self._vals = self.plan.template.copy()
            outer = self.outer_vals
            for mine, theirs in self.pairs:
                vals[mine] = outer[theirs]
        return vals

    def __call__(self, *inputs):
        vals = self._seeded()
        for s, v in zip(self.plan.input_slots, inputs):
            vals[s] = v
        return self.plan.run_steps(vals, self.stop)

    def loop_runner(self):
        """(fn, uses i, uses cond) for a Loop's iterations: fn(iteration number, condition,
        carried values) -> outputs, with everything a call needs looked up once, and whether
        the body uses its first two inputs at all (a Loop builds no tensor it ignores).  fn
        reads the terminate flag once per call (a body of no steps still stops)."""
        plan, stop = self.plan, self.stop
        vals, run = self._seeded(), plan.run_steps
        s_i, s_cond, s_carried = plan.loop_slots
        if len(s_carried) == 1:  # the common case, without the loop
            s_v = s_carried[0]

            def once(i, cond, carried):
                if stop is not None and stop.terminate:
                    raise Fail(TERMINATED)
                vals[s_i] = i
                vals[s_cond] = cond
                vals[s_v] = carried[0]
                return run(vals, stop)
        else:
            def once(i, cond, carried):
                if stop is not None and stop.terminate:
                    raise Fail(TERMINATED)
                vals[s_i] = i
                vals[s_cond] = cond
                for s, v in zip(s_carried, carried):
                    vals[s] = v
                return run(vals, stop)
        used = plan.used_inputs
        return once, used[0], used[1]


class ProfiledBoundGraph:
    """A subgraph bound inside a profiled run: its steps are recorded too (a fresh value list
    per call, as the profiled loop seeds its own)."""

    __slots__ = ("plan", "outer", "recorder", "stop")

    def __init__(self, plan: "Plan", outer: dict, recorder, stop=None):
        self.plan, self.outer, self.recorder, self.stop = plan, outer, recorder, stop

    input_names = BoundGraph.input_names
    output_names = BoundGraph.output_names
    reads_input = BoundGraph.reads_input

    def __call__(self, *inputs):
        return self.plan.run_profiled(list(inputs), self.recorder, self.outer, self.stop)

    def loop_runner(self):
        stop = self.stop

        def once(i, cond, carried):
            if stop is not None and stop.terminate:
                raise Fail(TERMINATED)
            return self(i, cond, *carried)
        return once, True, True


class Step:
    __slots__ = ("_fn", "ctx", "ins", "outs", "attrs", "frees", "node", "provider", "plan",
                 "subplans", "outer_slots", "bindings", "one_graph", "single", "unary", "gather", "fetch_outputs")

    def __init__(self, fn, ctx, ins, outs, attrs, node, provider, subplans, outer_slots):
        self.plan = None  # the Plan whose program holds this step (set when it is compiled)
        self._fn, self.ctx, self.ins, self.outs, self.attrs = fn, ctx, ins, outs, attrs
        self.node, self.provider = node, provider
        self.subplans = subplans        # [(attribute name, Plan | [Plan])]
        self.outer_slots = outer_slots  # [(name, slot)] the subgraphs read from this scope
        # per subgraph attribute: (name, (plan, pairs) or a list of them), pairs being the
        # (slot in the subgraph, slot here) of each outer-scope value it reads
        where = dict(outer_slots)
        self.bindings = tuple(
            (name, [(q, _pairs(q, where)) for q in p] if isinstance(p, list) else (p, _pairs(p, where)))
            for name, p in subplans)
        self.one_graph = None
        if len(self.bindings) == 1 and not attrs and type(self.bindings[0][1]) is tuple:
            self.one_graph = (self.bindings[0][0], *self.bindings[0][1])
        self.single = len(outs) == 1 and outs[0] >= 0
        self.frees = ()
        # Fast argument fetch: one slot read, or a C-level itemgetter returning a tuple.
        self.unary = len(ins) == 1 and ins[0] >= 0
        self.gather = _make_gather(ins)
        self.fetch_outputs = _make_gather(tuple(s for s in outs if s >= 0))  # for the profiler


    @property
    def fn(self):
        return self._fn

    @fn.setter
    def fn(self, value):
        """A kernel swapped in (a tracing wrapper, ortgpu.memory.lifetimes) is what the plan's
        program calls from then on."""
        self._fn = value
        if self.plan is not None:
            self.plan._compile_program()


def _pairs(plan: "Plan", where: dict) -> tuple:
    """(slot in `plan`, slot in the enclosing plan) of each outer-scope value `plan` reads."""
    return tuple((s, where[k]) for k, s in plan.outer_slots)


def _make_gather(ins):
    """vals -> tuple of input values.  An omitted optional input has slot -1, which indexes the
    last slot of every value list: a plan's spare slot that always holds None (Plan.template)."""
    if not ins:
        return lambda vals: ()
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
    copies of its initializers through `init_cache` ({(graph id, name, device): array}), and
    the byte budget of the forms kernels prepare from their constant inputs through
    `constant_forms` (providers/constant_forms.py; the subgraphs' plans share their parent's)."""

    def __init__(self, graph: Graph, providers, is_subgraph: bool = False, *, input_devices=None,
                 output_devices=None, part: Partition | None = None, init_cache: dict | None = None,
                 constant_forms: ConstantForms | None = None, constant_outer: frozenset = frozenset()):
        if part is None:
            part = partition(graph, providers, input_devices, output_devices)
        self.graph = graph
        self.partition = part
        self.constant_forms = constant_forms if constant_forms is not None else ConstantForms()
        self._constant_outer = constant_outer  # outer-scope keys that are constants of the enclosing plan
        self.input_names = [v.name for v in graph.inputs]
        self._fed = frozenset(self.input_names)
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
        self.template = [None] * (len(slots) + 1)  # the last: slot -1, always None (_make_gather)
        for n, v in graph.initializers.items():
            self.template[slots[n]] = v
        cache = init_cache if init_cache is not None else {}
        for k, (n, prov) in part.init_copies.items():  # initializers used on a device: copied once
            ck = (id(graph), n, k[1])
            if ck not in cache:
                cache[ck] = prov.copy_from_host(graph.initializers[n])
            self.template[slots[k]] = cache[ck]
        self._plan_lifetimes(is_subgraph)
        self._compile_program()

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
        outer_const = frozenset(sub_key for sub_key, key in placed.outer_binding if self._is_constant_key(key, graph))
        for name, sub in placed.subparts:
            attrs.pop(name, None)
            if isinstance(sub, list):
                compiled.append((name, [Plan(p.graph, providers, True, part=p, init_cache=init_cache,
                                             constant_forms=self.constant_forms, constant_outer=outer_const)
                                        for p in sub]))
            else:
                compiled.append((name, Plan(sub.graph, providers, True, part=sub, init_cache=init_cache,
                                            constant_forms=self.constant_forms, constant_outer=outer_const)))
        ctx = KernelContext(
            prov.xp, prov.name, node.name, node.op_type, node.opset, len(node.outputs),
            tuple(bool(o) for o in node.outputs),
            tuple(graph.types.get(x) if x else None for x in node.inputs),
            tuple(graph.types.get(x) if x else None for x in node.outputs), prov,
            tuple(self._is_constant_key(k, graph) for k in placed.in_keys), self.constant_forms)
        ins = tuple(slot(k) if k is not None else -1 for k in placed.in_keys)
        outs = tuple(slot(k) if k is not None else -1 for k in placed.out_keys)
        outer_slots = [(sub_key, slot(key)) for sub_key, key in placed.outer_binding]
        prepare = getattr(kdef.fn, "prepare", None)
        if prepare is not None:  # work a kernel does once per node, at session creation
            prepare(ctx, **attrs)
        return Step(kdef.fn, ctx, ins, outs, attrs, node, prov, compiled, outer_slots)

    def _is_constant_key(self, key, graph: Graph) -> bool:
        """Whether a node input (its partition key) is fixed for the session: an omitted input,
        an initializer of this graph that is not also a graph input (an overridable initializer
        may be fed), the device copy of such an initializer, or an outer-scope value that is a
        constant of the enclosing plan (a subgraph reading the model's weights)."""
        if key is None:
            return True
        if type(key) is tuple:
            return key in self.partition.init_copies or key in self._constant_outer
        return key in graph.initializers and key not in self._fed

    def _plan_lifetimes(self, is_subgraph: bool) -> None:
        """Release each value after the step that reads it last.  Graph outputs are kept, and
        so are the slots the seed fills (initializers, their device copies, outer-scope values:
        the template or the enclosing run holds them anyway), so that a subgraph's value list
        can be reused from one call to the next.  Also notes which inputs are used at all."""
        keep = set(self.output_slots)
        input_set = set(self.input_slots)
        keep.update(s for _, s in self.outer_slots)
        keep.update(s for s, v in enumerate(self.template) if v is not None and s not in input_set)
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
        outs = set(self.output_slots)
        self.used_inputs = tuple(s in last or s in outs for s in self.input_slots)
        ins = self.input_slots  # a Loop body's: iteration number, condition, carried values
        self.loop_slots = (ins[0], ins[1], tuple(ins[2:])) if len(ins) >= 2 else None

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
            return list(self.run_steps(self.seed(inputs, outer), stop))

    def run_steps(self, vals: list, stop=None):
        """The steps over seeded value slots (inside the caller's np.errstate); the outputs, a
        tuple.  The hot loop of every run and every subgraph call: it walks `program`, each
        step's fields unpacked at once, and reads the terminate flag before each step."""
        st = None
        try:
            for st, fn, ctx, arg, attrs, out, frees in self.program:
                if stop is not None and stop.terminate:
                    raise Fail(TERMINATED)
                if fn is None:  # a pass-through (Identity): the value itself, no call
                    vals[out] = vals[arg]
                    for f in frees:
                        vals[f] = None
                    continue
                if arg is None:  # a node with subgraphs: fn binds them (_subgraph_call)
                    res = fn(vals, stop)
                elif type(arg) is int:
                    res = fn(ctx, vals[arg], **attrs) if attrs else fn(ctx, vals[arg])
                else:
                    res = fn(ctx, *arg(vals), **attrs) if attrs else fn(ctx, *arg(vals))
                if out >= 0:
                    vals[out] = res if type(res) is not tuple else res[0]
                else:
                    store_outputs(st, vals, res)
                for f in frees:
                    vals[f] = None
        except Exception as e:
            raise_node_error(st, e)
        return self.fetch(vals)

    def _compile_program(self) -> None:
        """`program`: per step (step, kernel, context, its input: a slot for one, a gather
        function for several, None for a node with subgraphs; its attributes, its output slot
        (-1: several outputs), the slots released after it); `fetch`: vals -> the outputs."""
        for st in self.steps:
            st.plan = self
        self.program = tuple(
            (st, _subgraph_call(st) if st.subplans else None if _passes_through(st) else st.fn,
             st.ctx, None if st.subplans else st.ins[0] if st.unary else st.gather,
             st.attrs, st.outs[0] if st.single else -1, st.frees)
            for st in self.steps)
        outs = tuple(self.output_slots)
        self.fetch = (lambda vals: ()) if not outs else (
            (lambda vals: (vals[outs[0]],)) if len(outs) == 1 else operator.itemgetter(*outs))

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
                    res = call_step(st, vals, stop, recorder)
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
                        store_outputs(st, vals, res)
                        meta = tensor_metas(infos[i].outputs(vals))
                    record((i, t0, t1, tid, meta, token))
                    for f in st.frees:
                        vals[f] = None
        except Exception as e:
            raise_node_error(st, e)
        finally:
            recorder.span("SequentialExecutor::Execute", t_start, clock())
        return [vals[s] for s in self.output_slots]

    @staticmethod
    def _call_with_subgraphs(st: Step, vals: list, recorder=None, stop=None):
        """Run a node with subgraph attributes, each bound to this run's values (no copy of
        them: a bound subgraph seeds its own value list from `vals` on its first call)."""
        if recorder is not None:
            return Plan._call_profiled(st, vals, recorder, stop)
        if st.one_graph is not None:  # one subgraph attribute and no other (Loop, Scan)
            name, plan, pairs = st.one_graph
            return st.fn(st.ctx, *st.gather(vals), **{name: BoundGraph(plan, vals, pairs, stop)})
        kw = st.attrs.copy()
        for name, b in st.bindings:
            if type(b) is tuple:
                kw[name] = BoundGraph(b[0], vals, b[1], stop)
            else:
                kw[name] = [BoundGraph(p, vals, pairs, stop) for p, pairs in b]
        return st.fn(st.ctx, *st.gather(vals), **kw)

    @staticmethod
    def _call_profiled(st: Step, vals: list, recorder, stop):
        attrs = dict(st.attrs)
        scope = {key: vals[s] for key, s in st.outer_slots}
        for name, p in st.subplans:
            attrs[name] = (ProfiledBoundGraph(p, scope, recorder, stop) if not isinstance(p, list)
                           else [ProfiledBoundGraph(q, scope, recorder, stop) for q in p])
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


def _subgraph_call(st: Step):
    """fn(vals, stop) -> the result of a node with subgraphs, each bound to this run's values
    (Plan._call_with_subgraphs; a direct closure for the common one-subgraph node, and for an
    If, the chosen branch's plan run directly: _if_call)."""
    if_call = _if_call(st)
    if if_call is not None:
        return if_call
    if st.one_graph is None:
        return lambda vals, stop: Plan._call_with_subgraphs(st, vals, stop=stop)
    fn, ctx, gather = st.fn, st.ctx, st.gather
    name, plan, pairs = st.one_graph

    def call(vals, stop):
        return fn(ctx, *gather(vals), **{name: BoundGraph(plan, vals, pairs, stop)})
    return call


def _if_call(st: Step):
    """fn(vals, stop) for an If whose kernel names its branch selector (``branch_select``,
    providers/kernels/controlflow.py): the condition picks a branch, whose value list is seeded
    from its template and the outer-scope values it reads, and its steps run at once; the
    outputs are the branch's, a tuple.  None for any other step (a kernel swapped in by a
    tracer has no selector and takes the general path)."""
    select = getattr(st.fn, "branch_select", None)
    names = dict(st.bindings)
    if (select is None or st.attrs or not st.unary or set(names) != {"then_branch", "else_branch"}
            or any(type(b) is not tuple for b in names.values())):
        return None
    cond_slot = st.ins[0]
    then_plan, then_pairs = names["then_branch"]
    else_plan, else_pairs = names["else_branch"]
    then_branch = (then_plan.template, then_pairs, then_plan.run_steps)
    else_branch = (else_plan.template, else_pairs, else_plan.run_steps)

    def call(vals, stop):
        template, pairs, run = then_branch if select(vals[cond_slot]) else else_branch
        sub = template.copy()
        for mine, theirs in pairs:
            sub[mine] = vals[theirs]
        return run(sub, stop)
    return call


def _passes_through(st: Step) -> bool:
    """Whether a step's kernel returns its one input itself (the shared Identity kernel):
    the run then moves the value without a call."""
    fn = st.fn
    return (st.node.op_type == "Identity" and st.unary and st.single and not st.attrs
            and getattr(fn, "__name__", "") == "Identity" and not hasattr(fn, "__wrapped__")
            and getattr(fn, "__module__", "").endswith("providers.kernels.basic"))


# ---- the per-step surface of every step loop: run_steps (the hot loop, which inlines the
# one-output store), run_profiled and ortgpu.parallel_run's data-flow loop.

def call_step(st: Step, vals: list, stop=None, recorder=None):
    """One step's kernel on its inputs in `vals` (a node with subgraphs gets them bound to this
    run, timed into `recorder` when one is given); the kernel's result.  Call it inside
    np.errstate(all="ignore"), as the run loops do."""
    if st.subplans:
        return Plan._call_with_subgraphs(st, vals, recorder, stop)
    if st.unary:
        return st.fn(st.ctx, vals[st.ins[0]], **st.attrs)
    return st.fn(st.ctx, *st.gather(vals), **st.attrs)


def store_outputs(st: Step, vals: list, res) -> None:
    """Put a kernel's result into the step's output slots: one output takes the value (or the
    first of a tuple), several take a tuple, one each."""
    if st.single:
        vals[st.outs[0]] = res if type(res) is not tuple else res[0]
        return
    if type(res) is not tuple:
        raise Fail(f"kernel returned {type(res).__name__}, expected a tuple of {len(st.outs)} outputs")
    for s, r in zip(st.outs, res):
        if s >= 0:
            vals[s] = r


def raise_node_error(st: Step | None, e: BaseException):
    """Raise `e`, which step `st` raised, as onnxruntime does: a message naming the node (`e`
    as its cause), or `e` itself when there is no step or its message names one already."""
    if st is None:
        raise e
    where = f"Non-zero status code returned while running {st.node.op_type} node. Name:'{st.node.name}'"
    if isinstance(e, _OrtError):
        if "while running" in e.message:
            raise e
        raise type(e)(f"{where} Status Message: {e.message}") from e
    raise RuntimeException(f"{where} Status Message: {type(e).__name__}: {e}") from e


def _copy_step(item: Copy, slot) -> Step:
    """A copy between devices as a step: a node with onnxruntime's Memcpy op types."""
    node = Node(item.name, item.op_type, "", 1, [item.value], [item.value], {})
    fn = item.fn

    def copy(ctx, value):
        return fn(value)
    return Step(copy, None, (slot(item.src_key),), (slot(item.dst_key),), {}, node, item.provider, [], [])
