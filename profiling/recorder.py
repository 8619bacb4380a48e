"""The session's profiler: collects raw timings during runs, writes onnxruntime's trace at the end.

Runs record as little as they can: per step two clock readings, the (dtype, shape) of its
outputs and a device-probe token; per plan run the (dtype, shape) of the values fed to it.
Input shapes and sizes are rebuilt when the trace is written, by replaying the records: each
input slot was fed, is an initializer, or was the output of an earlier step.  ``step_infos(plan)``
describes a plan's steps once (event name, op type, provider, node index, slots, which inputs
are initializers), cached on the plan.
"""
from __future__ import annotations

import math
import operator
import os
import threading
import time

import numpy as np

from ortgpu.profiling.device import probe_for
from ortgpu.profiling.telemetry import open_sampler
from ortgpu.profiling.trace import file_path, type_name, write_trace

clock = time.perf_counter_ns


class StepInfo:
    """What the trace says about one step of a plan; `outputs(vals)` is the tuple of its outputs."""

    __slots__ = ("name", "op_name", "provider", "node_index", "ins", "outs", "params", "single",
                 "outputs")

    def __init__(self, name, op_name, provider, node_index, ins, outs, params, single, outputs):
        self.name, self.op_name, self.provider, self.node_index = name, op_name, provider, node_index
        self.ins, self.outs, self.params, self.single = ins, outs, params, single
        self.outputs = outputs


def step_infos(plan) -> list[StepInfo]:
    """One StepInfo per step of `plan`, cached on it.  The node index is the node's position in
    the (optimized) graph; copy steps, which onnxruntime adds as Memcpy nodes, come after."""
    cached = getattr(plan, "_profile_steps", None)
    if cached is not None:
        return cached
    index = {id(n): i for i, n in enumerate(plan.graph.nodes)}
    param_slots = {plan.slots[n] for n in plan.graph.initializers if n in plan.slots}
    param_slots |= {plan.slots[k] for k in plan.partition.init_copies if k in plan.slots}
    extra = len(plan.graph.nodes)
    infos = []
    for st in plan.steps:
        i = index.get(id(st.node))
        if i is None:
            i, extra = extra, extra + 1
        name = st.node.name or f"{st.node.op_type}_{i}"  # onnxruntime's name for an unnamed node
        outs = tuple(s for s in st.outs if s >= 0)
        infos.append(StepInfo(name + "_kernel_time", st.node.op_type, st.provider.name, i, st.ins, outs,
                              tuple(s in param_slots for s in st.ins), st.single, st.fetch_outputs))
    plan._profile_steps = infos
    return infos


type_and_shape = operator.attrgetter("dtype", "shape")


def tensor_metas(values) -> tuple:
    """(dtype, shape) of each value; None for sequences, maps and omitted optionals."""
    out = []
    for v in values:
        try:
            out.append(type_and_shape(v))
        except AttributeError:
            out.append(None)
    return tuple(out)


class Recorder:
    """Timings of one profiled session, from construction to ``finish()``.

    Like onnxruntime, which stops recording after 1,000,000 events, a recorder keeps at most
    ``max_records`` records: a plan run that begins once the cap is reached records into a list
    that is dropped after the run (so a run is recorded whole or not at all), and the trace
    carries a note saying how many runs and spans were left out."""

    max_records = 1_000_000

    def __init__(self, prefix: str):
        self.start_ns = time.time_ns()   # what get_profiling_start_time_ns() returns
        self.origin = clock()            # the same instant on the clock that times events
        self.prefix = prefix
        self.pid = os.getpid()
        self._records: list[tuple] = []  # in the order events end, as onnxruntime writes them
        self._open: dict[int, int] = {}  # per thread: plan runs in progress that record for real
        self.dropped_runs = 0
        self.dropped_spans = 0
        self.notes: list[str] = []
        self.setup_us: dict[str, int] = {}  # session set-up phases (load, optimize, ...), us
        self.probe = None
        self.sampler = None
        self.path: str | None = None
        self._providers: list = []

    def attach(self, providers) -> None:
        """Device timing and telemetry for these providers (called when the plan is built)."""
        self._providers = list(providers)
        self.probe, notes = probe_for(providers)
        self.notes.extend(n for n in notes if n not in self.notes)
        if self.sampler is None:
            self.sampler, note = open_sampler(providers)
            if note and note not in self.notes:
                self.notes.append(note)

    @property
    def records(self) -> list:
        """The list a plan run records into (Plan.run_profiled takes its ``append`` once, when the
        run begins): the kept records, or once the cap is reached a fresh list nobody keeps."""
        if len(self._records) >= self.max_records:
            self.dropped_runs += 1
            return []
        tid = threading.get_native_id()
        self._open[tid] = self._open.get(tid, 0) + 1
        return self._records

    @property
    def full(self) -> bool:
        return len(self._records) >= self.max_records

    def span(self, name: str, t0: int, t1: int) -> None:
        """A Session event (model_loading_*, session_initialization, model_run, ...).  A plan run
        that recorded for real always gets its closing "SequentialExecutor::Execute" span."""
        tid = threading.get_native_id()
        if name == "SequentialExecutor::Execute" and self._open.get(tid, 0) > 0:
            self._open[tid] -= 1
        elif self.full:
            self.dropped_spans += 1
            return
        self._records.append((name, t0, t1, tid))

    # The profiled run loop (Plan.run_profiled) appends two more kinds of records itself:
    #   (plan, tid, ((slot, (dtype, shape) | None), ...))  a plan run begins, with its fed values
    #   (step index, t0, t1, tid, output meta(s), token)   a step of that plan ran; one (dtype,
    #                                                      shape) for a single-output step, else
    #                                                      a tuple; the device probe's token
    # A plan run ends with its "SequentialExecutor::Execute" span.  Node records hold only ints,
    # tuples and None (no token on the CPU), so the garbage collector soon stops scanning them.

    # --- the trace ----------------------------------------------------------------------
    def _us(self, t: int) -> int:
        return (t - self.origin) // 1000

    def _event(self, cat, name, t0, t1, tid, args, ph="X") -> dict:
        ts = self._us(t0)
        return {"cat": cat, "pid": self.pid, "tid": tid, "dur": self._us(t1) - ts, "ts": ts,
                "ph": ph, "name": name, "args": args}

    def events(self) -> list[dict]:
        out = []
        scopes: dict[int, list] = {}   # per thread: (step infos, slot -> meta, memory) of each plan run in progress
        templates: dict[int, dict] = {}  # per plan: slot -> meta of its initializers
        memory: list[PlanMemory] = []    # the top-level plan runs' values
        init_args = None
        for rec in self._records:
            head = rec[0]
            if isinstance(head, str):
                name, t0, t1, tid = rec
                args = dict(self.setup_us) if name == "session_initialization" else {}
                if name == "session_initialization":
                    init_args = args
                out.append(self._event("Session", name, t0, t1, tid, args))
                if name == "SequentialExecutor::Execute" and scopes.get(tid):
                    scopes[tid].pop()
            elif isinstance(head, int):
                infos, slots, mem = scopes[rec[3]][-1]
                self._node_events(out, infos[head], rec, slots)
                if mem is not None:
                    mem.step(head, slots)
            else:  # a plan run begins
                plan, tid, fed = rec
                if id(plan) not in templates:
                    templates[id(plan)] = {s: m for s, m in enumerate(tensor_metas(plan.template))
                                           if m is not None}
                slots = dict(templates[id(plan)])
                slots.update(fed)
                mem = None
                if not scopes.get(tid):  # a run's own plan, not a subgraph's
                    mem = PlanMemory(plan, templates[id(plan)], fed)
                    memory.append(mem)
                scopes.setdefault(tid, []).append((step_infos(plan), slots, mem))
        if memory and init_args is not None:  # in the set-up event's args: no event onnxruntime lacks
            init_args["memory"] = self._memory_args(memory)
        notes = list(self.notes)
        if self.dropped_runs or self.dropped_spans:
            notes.append(f"profiling stopped recording after {self.max_records} records (onnxruntime stops "
                         f"at 1,000,000 events): {self.dropped_runs} later runs and {self.dropped_spans} "
                         f"session events are not in this trace")
        for note in notes:
            e = self._event("Telemetry", "note", self.origin, self.origin, 0, {"note": note}, "i")
            e["s"] = "g"
            out.append(e)
        if self.sampler is not None:
            e = self._event("Telemetry", "gpu_device", self.origin, self.origin, 0, self.sampler.info, "i")
            e["s"] = "g"
            out.append(e)
            for t, values in self.sampler.samples:
                out.append(self._event("Telemetry", "gpu", t, t, 0, values, "C"))
        return out

    def _memory_args(self, runs: list["PlanMemory"]) -> dict:
        """The memory event's args: the largest run's values (bytes), and the arena counters of
        each provider that has an arena."""
        top = max(runs, key=lambda m: m.peak)
        args = {"runs": len(runs), "planned_peak_bytes": top.peak, "naive_bytes": top.naive,
                "parameter_bytes": top.parameters, "input_bytes": top.inputs}
        for p in self._providers:
            stats = getattr(p, "memory_stats", None)
            if stats is None:
                continue
            try:
                got = stats()
            except Exception:  # noqa: BLE001 - a report leaves out what it cannot read
                continue
            arena = {k: int(got[k]) for k in ARENA_FIELDS if isinstance(got.get(k), (int, float))}
            last = (got.get("mem_pattern") or {}).get("last_plan")
            if isinstance(last, dict):
                arena.update({f"pattern_{k}": int(v) for k, v in last.items() if isinstance(v, (int, float))})
            if arena:
                args[f"arena {p.name}"] = arena
        return args

    def _node_events(self, out: list, info: StepInfo, rec: tuple, slots: dict) -> None:
        _, t0, t1, tid, meta, token = rec
        out_metas = (meta,) if info.single else meta
        slots.update(zip(info.outs, out_metas))
        ins = [(slots.get(s), p) for s, p in zip(info.ins, info.params) if s >= 0]
        out.append(self._event("Node", info.name, t0, t1, tid, _node_args(info, ins, out_metas)))
        timed = self.probe.resolve(token) if token is not None and self.probe is not None else None
        if timed is not None:
            d0, dur = timed
            out.append(self._event("Kernel", info.name[:-len("_kernel_time")] + "_device_time",
                                   d0, d0 + dur, self.probe.stream_id,
                                   {"op_name": info.op_name, "provider": info.provider,
                                    "parent_name": info.name}))

    def finish(self) -> str:
        """Write the trace (once) and return its path."""
        if self.path is None:
            if self.sampler is not None:
                self.sampler.stop()
            self.path = write_trace(self.events(), file_path(self.prefix, self.start_ns))
        return self.path


ARENA_FIELDS = ("bytes_in_use", "max_bytes_in_use", "bytes_reserved", "bytes_limit", "num_allocs")
# ops whose output views their input (NumPy): no new memory, in the planned and the naive count
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


class PlanMemory:
    """The bytes of one plan run's values, replayed from its records: ``peak``, the most bytes
    of values made by its steps alive at once as the plan releases them (each value after the
    step that reads it last), against ``naive``, every value kept to the end of the run (no
    reuse at all); ``parameters`` and ``inputs`` (held whatever the plan does).  Views (VIEW_OPS)
    add nothing and keep their base alive while the plan releases it first (a view whose base
    lives on is not followed further); a value a kernel wrote into its input is counted as new.
    Tensors only: sequences and maps are left out."""

    __slots__ = ("plan", "live", "now", "peak", "naive", "parameters", "inputs")

    def __init__(self, plan, template: dict, fed):
        self.plan = plan
        self.live: dict[int, int] = {}
        self.now = self.peak = self.naive = 0
        self.parameters = sum(_nbytes(m) for m in template.values() if m is not None)
        self.inputs = sum(_nbytes(m) for _, m in fed if m is not None)

    def step(self, i: int, slots: dict) -> None:
        st = self.plan.steps[i]
        if st.node.op_type in VIEW_OPS:
            # a view keeps its base's memory: when the base is released here, the view holds it
            base = st.ins[0] if st.ins else -1
            for s in st.outs:
                if s >= 0:
                    self.live[s] = self.live.pop(base, 0) if base in st.frees else 0
        else:
            for s in st.outs:
                meta = slots.get(s) if s >= 0 else None
                if meta is not None:
                    b = _nbytes(meta)
                    self.live[s] = b
                    self.now += b
                    self.naive += b
        self.peak = max(self.peak, self.now)
        for s in st.frees:
            self.now -= self.live.pop(s, 0)


def _node_args(info: StepInfo, ins, outs) -> dict:
    """onnxruntime's Node args; `ins` is [(meta, is_initializer)], `outs` [meta] (None: not a tensor)."""
    activation = parameter = 0
    in_shapes = []
    for meta, is_param in ins:
        if meta is None:
            continue
        in_shapes.append({type_name(meta[0]): list(meta[1])})
        if is_param:
            parameter += _nbytes(meta)
        else:
            activation += _nbytes(meta)
    outs = [m for m in outs if m is not None]
    return {"op_name": info.op_name, "provider": info.provider, "node_index": str(info.node_index),
            "activation_size": str(activation), "parameter_size": str(parameter),
            "output_size": str(sum(_nbytes(m) for m in outs)),
            "input_type_shape": in_shapes, "output_type_shape": [{type_name(m[0]): list(m[1])} for m in outs]}


def _nbytes(meta) -> int:
    dtype, shape = meta
    return math.prod(shape) * np.dtype(dtype).itemsize
