"""The run core below InferenceSession: the plans of one optimized graph for its providers,
and the one ``run`` that ``run``, ``run_with_ort_values`` and ``run_with_iobinding`` adapt.

A run has feeds (values by input name, on whatever device they are) and a fetch list: per
wanted output, its position and a ``Target`` (a device, a preallocated OrtValue, or
wherever it is produced).  The core compiles one plan per device signature of inputs and
outputs and keeps it, so that the partitioner places no copy for an input already on the
device that first uses it, nor for an output wanted where it is produced: a run with device
inputs and device outputs makes no host round trip.  With CUDA graphs the GraphRunner
(ortgpu.graph_capture) runs instead; its outputs are its fixed buffers, copied out to their
targets.

A run "on devices" (OrtValue feeds) first orders the device streams after the caller's work
and, after the run, synchronizes them (onnxruntime's default) unless the run config entry
``disable_synchronize_execution_providers`` is "1".  The entry
``memory.enable_memory_arena_shrinkage`` ("gpu:0", "cpu:0;gpu:0") is checked before the run
and returns the free regions of the named device arenas after it (``arenas_to_shrink``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from time import perf_counter_ns

import numpy as np

from ortgpu.devices import kind_of
from ortgpu.errors import Fail, InvalidArgument
from ortgpu.executor import Plan
from ortgpu.feeds import ModelIO, check_dims, check_feed
from ortgpu.graph import Graph
from ortgpu.graph_capture import DEFAULT_ID, GPU_GRAPH_ID, GraphRunner, capture_partition, graph_id_of
from ortgpu.memory import host_heap
from ortgpu.memory.pattern import pattern_key
from ortgpu.options import RunOptions
from ortgpu.partition import ANY
from ortgpu.placement import HOST
from ortgpu.providers.constant_forms import ConstantForms
from ortgpu.parallel_run import ParallelRunner
from ortgpu.threads import BUDGET, available_cores
from ortgpu.values import OrtValue, device_of

DISABLE_SYNC = "disable_synchronize_execution_providers"  # onnxruntime's run config keys
SHRINK_ARENAS = "memory.enable_memory_arena_shrinkage"
_INT32 = (-(1 << 31), (1 << 31) - 1)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where an output goes: `device` (a device kind name, None for wherever it is produced)
    and `device_id`, or into `buffer`, a preallocated OrtValue (on its device)."""
    device: str | None = None
    device_id: int = 0
    buffer: OrtValue | None = None

    @classmethod
    def into(cls, buffer: OrtValue) -> "Target":
        name, device_id = buffer._device()
        return cls(name, device_id, buffer)


HOST_TARGET = Target(HOST)


def check_run_options(run_options) -> int:
    """Refuse a wrong run_options or a set terminate flag; the run's gpu_graph_id."""
    if run_options is None:
        return DEFAULT_ID
    if not isinstance(run_options, RunOptions):
        raise TypeError(f"run_options must be an ortgpu RunOptions, not {type(run_options).__name__}")
    graph_id = graph_id_of(run_options)
    if not _INT32[0] <= graph_id <= _INT32[1]:  # onnxruntime parses the id as a 32-bit int
        raise InvalidArgument(f"Failed to parse the cuda graph annotation id: {run_options._config[GPU_GRAPH_ID]}")
    if run_options.terminate:
        raise Fail("Exiting due to terminate flag being set to true.")
    return graph_id


class RunCore:
    """One optimized graph compiled for a list of providers: its plans (per device signature),
    the CUDA-graph runner, its inputs' and outputs' metadata, its initial values, the
    profiling recorder and its intra-op thread bound (ortgpu.threads); ``run`` executes it."""

    def __init__(self, graph: Graph, providers, io: ModelIO, recorder=None, mem_pattern: bool = True,
                 intra_op_threads: int = 0, inter_op_threads: int = 1, cpu_arena: bool = True):
        graph_provider = next((p for p in providers if getattr(p, "graph_capture_enabled", False)), None)
        # a model that cannot be captured is refused before anything touches the device
        capture_part = capture_partition(graph, providers, graph_provider) if graph_provider else None
        self.init_cache: dict = {}  # device copies of initializers, shared by every plan of this graph
        self.constant_forms = ConstantForms()  # the byte budget of kernels' prepared constant inputs
        with run_scope(providers):  # initializers used on a device are copied there now
            self.plan = Plan(graph, providers, init_cache=self.init_cache, constant_forms=self.constant_forms)
            self.graphs = None if capture_part is None else GraphRunner(
                Plan(graph, providers, part=capture_part, init_cache=self.init_cache,
                     constant_forms=self.constant_forms), graph_provider)
        self.graph, self.providers, self.io = graph, list(providers), io
        self.recorder, self.mem_pattern, self.intra_op_threads = recorder, mem_pattern, intra_op_threads
        self.cpu_arena = cpu_arena  # SessionOptions.enable_cpu_mem_arena: "cpu:0" may be shrunk
        self.run_ns = 0  # a host run's length when no other run is in progress (moving average)
        if cpu_arena:
            host_heap.keep_freed_memory()
        self.plans: dict = {}
        self.input_names, self.output_names = self.plan.input_names, self.plan.output_names
        self.output_index = {n: i for i, n in enumerate(self.output_names)}
        self.fetch_all_on_host = tuple((i, HOST_TARGET) for i in range(len(self.output_names)))  # run(None, ...)
        self.init_values = {n: graph.initializers[n] for n in self.input_names if n in graph.initializers}
        self.constant_roots = _constant_roots(graph)
        # per input, the (dtype, shape) of host arrays already accepted: such a feed passes again
        # without its checks (a few microseconds a run on a small model)
        self._accepted: dict[str, set] = {n: set() for n in self.input_names}
        self._scoped = any(hasattr(p, "run_context") for p in self.providers)  # a device provider
        # ORT_PARALLEL: ready steps run at once; each then has its part of the cores for BLAS
        self.parallel = ParallelRunner(inter_op_threads) if inter_op_threads > 1 else None
        if self.parallel is not None and intra_op_threads <= 0:
            self.intra_op_threads = max(1, available_cores() // inter_op_threads)

    # --- what a run asks for -----------------------------------------------------------------
    def output_positions(self, output_names) -> list[int]:
        """Positions of the wanted outputs (all for None or []); InvalidArgument for a bad name."""
        if not output_names:
            if not self.output_names:  # a graph without outputs: onnxruntime's run refuses it
                raise InvalidArgument("At least one output should be requested.")
            return list(range(len(self.output_names)))
        if isinstance(output_names, str):
            raise TypeError("output_names must be a list of output names (or None), not a str")
        pos = []
        for name in output_names:
            if name not in self.output_index:
                raise InvalidArgument(f"Invalid output name:{name}")
            pos.append(self.output_index[name])
        return pos

    def device_key(self, device: tuple[str, int], what: str) -> str:
        """The partitioner's device for a value on (device kind, device id), or InvalidArgument
        when no provider of this session runs there."""
        name, device_id = device
        if name == HOST:
            return HOST
        for p in self.providers:
            if p.device == name:
                own = getattr(p, "device_id", 0)
                if own != device_id:
                    raise InvalidArgument(f"{what} is on {name}:{device_id} but {p.name} of this session "
                                          f"runs on {name}:{own}")
                return name
        raise InvalidArgument(f"{what} is on device '{name}' but no provider of this session runs there "
                              f"(providers: {[p.name for p in self.providers]})")

    def provider_on(self, device: str):
        return next(p for p in self.providers if p.device == device)

    def plan_for(self, input_devices: tuple, output_devices: tuple) -> Plan:
        """The plan whose inputs arrive on `input_devices` and whose outputs are delivered on
        `output_devices` (partition.ANY: where produced), compiled once and kept."""
        if all(d == HOST for d in input_devices) and all(d == HOST for d in output_devices):
            return self.plan
        key = (input_devices, output_devices)
        plan = self.plans.get(key)
        if plan is None:
            with run_scope(self.providers):
                plan = Plan(self.graph, self.providers, input_devices=list(input_devices),
                            output_devices=list(output_devices), init_cache=self.init_cache,
                            constant_forms=self.constant_forms)
            self.plans[key] = plan
        return plan

    # --- the run -------------------------------------------------------------------------------
    def run(self, feeds: dict, fetch: list, graph_id: int = DEFAULT_ID, run_options=None,
            on_devices: bool = False) -> list:
        """Run with `feeds` ({input name: value}, names already checked) and return the value of
        each (output position, Target) of `fetch` at its target (a preallocated target's array).
        Without `on_devices` every feed is brought to the host and outputs not fetched stay
        where the host plan puts them; with it, feeds stay on their devices."""
        inputs, in_devs = self._inputs(feeds, on_devices)
        if (not on_devices and self.graphs is None and self.recorder is None and self.parallel is None
                and not self._scoped and all(target is HOST_TARGET for _, target in fetch)):
            # the common run: host feeds, host outputs, the host plan (plan_for's first case)
            return self._run_on_host(inputs, fetch, run_options)
        out_devs = [ANY if on_devices else HOST] * len(self.output_names)
        for pos, target in fetch:
            if target.device is not None:
                out_devs[pos] = self.device_key((target.device, target.device_id),
                                                f"output '{self.output_names[pos]}'")
        if on_devices:
            for p in self.providers:
                wait = getattr(p, "wait_for_caller", None)
                if wait is not None:
                    wait()
        plan = None if self.graphs is not None else self.plan_for(tuple(in_devs), tuple(out_devs))
        shrink = self.arenas_to_shrink(run_options)
        rec = self.recorder
        t0 = perf_counter_ns() if rec is not None else 0
        scope = (run_scope(self.providers, inputs if self.mem_pattern else None) if self._scoped
                 else contextlib.nullcontext())
        try:
            with BUDGET.run(self.intra_op_threads, gate=not self._scoped), scope:
                if plan is None:
                    results = self.graphs.run(graph_id, inputs)
                elif rec is None:
                    results = (plan.run(inputs, stop=run_options) if self.parallel is None
                               else self.parallel.run(plan, inputs, stop=run_options))
                else:
                    results = plan.run_profiled(inputs, rec, stop=run_options)
                outputs = [self._deliver(results[pos], target, self.output_names[pos], plan is None)
                           for pos, target in fetch]
                del results
        finally:  # after a failed run too, as onnxruntime does
            for memory in shrink:
                memory.shrink()
        outputs = self._unshared(outputs, inputs)
        if rec is not None:
            rec.span("model_run", t0, perf_counter_ns())
        if on_devices and (run_options is None or run_options._config.get(DISABLE_SYNC) != "1"):
            for p in self.providers:
                sync = getattr(p, "synchronize", None)
                if sync is not None:
                    sync()
        return outputs

    def _run_on_host(self, inputs: list, fetch: list, run_options) -> list:
        """``run`` of the host plan, without a profiler, CUDA graphs, parallel steps or a device
        provider: what ``run`` does for them, less the work that is nothing then (the plan
        lookup, the device scopes, the delivery to targets)."""
        shrink = self.arenas_to_shrink(run_options) if run_options is not None else ()
        try:
            with BUDGET.run(self.intra_op_threads, one_at_a_time=self.run_ns < SHORT_RUN_NS):
                start = perf_counter_ns()
                alone = BUDGET.runs_in_progress == 1
                results = self.plan.run(inputs, stop=run_options)
                took = perf_counter_ns() - start
                # a run's own length, not the length other runs made it; a shorter one counts
                # even beside others (they only lengthen it): a session whose first, cold runs
                # were long and whose runs then overlap learns that they are short
                if alone or took < self.run_ns:
                    self.run_ns = (3 * self.run_ns + took) >> 2
        finally:  # after a failed run too, as onnxruntime does
            for memory in shrink:
                memory.shrink()
        return self._unshared([results[pos] for pos, _ in fetch], inputs)

    def arenas_to_shrink(self, run_options) -> list:
        """The device memories (ortgpu.memory.DeviceMemory) named by the run config entry
        ``memory.enable_memory_arena_shrinkage``: "device:id" items separated by ';', device
        "cpu" or "gpu" (an id left out is 0).  "cpu:0" is accepted where onnxruntime accepts it
        (the session's enable_cpu_mem_arena is on) and gives the C heap's free memory back
        (memory/host_heap.py); "gpu:N" is the arena of this session's
        device provider on device N.  Anything else is onnxruntime's InvalidArgument."""
        entry = run_options._config.get(SHRINK_ARENAS) if run_options is not None else None
        if not entry:
            return []
        items = entry.split(";")
        if items[-1] == "":  # a trailing ';' ends the list
            items.pop()
        found = []
        for item in items:
            device, _, rest = item.partition(":")
            if item and device not in ("cpu", "gpu"):
                raise InvalidArgument(f"Unsupported device specified in the memory arena shrink list: {device}")
            text = rest.split(":")[0]
            if text and not _DIGITS.fullmatch(text):
                raise InvalidArgument(f"Unsupported device id in the memory arena shrink list: {text}")
            device_id = int(text) if text else 0
            memory = self._arena(device, device_id) if item else None
            if memory is None:
                raise InvalidArgument("Did not find an arena based allocator registered for device-id "
                                      f"combination in the memory arena shrink list: {item}")
            if memory not in found:
                found.append(memory)
        return found

    def _arena(self, device: str, device_id: int):
        """The memory to shrink for ("cpu" | "gpu", id); _HOST_HEAP for an accepted "cpu:0";
        None when this session has no such arena."""
        if device == "cpu":
            return _HOST_HEAP if self.cpu_arena and device_id == 0 else None
        for p in self.providers:
            if p.device != HOST and getattr(p, "device_id", 0) == device_id:
                memory = getattr(p, "memory", None)
                if memory is not None and hasattr(memory, "shrink"):
                    return memory
        return None

    def _unshared(self, outputs: list, inputs: list) -> list:
        """`outputs` with a private, writable copy of each host array that shares memory with a
        feed or a constant (Identity, Reshape or Transpose of an input or an initializer):
        as in onnxruntime, what a run returns is the caller's alone.  Copies only then."""
        shared = None
        for i, v in enumerate(outputs):
            if type(v) is not np.ndarray:
                continue
            if v.base is None and id(v) not in self.constant_roots and v.flags.writeable:
                for x in inputs:
                    if v is x:
                        break
                else:
                    continue  # an array the run made (no view of anything): the caller's already
            if shared is None:
                shared = self.constant_roots | {id(_memory_root(x)) for x in inputs if type(x) is np.ndarray}
            if id(_memory_root(v)) in shared or not v.flags.writeable:
                outputs[i] = v.copy()
        return outputs

    def _inputs(self, feeds: dict, on_devices: bool) -> tuple[list, list]:
        """The plan's input values (checked; an input left out is its initializer or None) and
        the device each is on."""
        meta = self.io.input_meta
        inputs, devices = [], []
        for name in self.input_names:
            if name in feeds:
                value = feeds[name]
                if type(value) is np.ndarray and (value.dtype, value.shape) in self._accepted[name]:
                    inputs.append(value)  # as an array of this type and shape checked before
                    devices.append(HOST)
                    continue
                if isinstance(value, OrtValue) and on_devices:
                    value = value._value
                fed = value
                value = check_feed(name, value, meta[name].type, keep_device=on_devices)
                if value is fed and type(value) is np.ndarray and value.dtype.kind not in "OUSV":
                    seen = self._accepted[name]
                    if len(seen) >= 64:  # bounded: a model fed ever new shapes keeps checking them
                        seen.clear()
                    seen.add((value.dtype, value.shape))
                inputs.append(value)
                devices.append(self.device_key(device_of(value), f"input '{name}'") if on_devices else HOST)
            else:  # an omitted optional input, or an initializer that was not overridden
                inputs.append(self.init_values.get(name))
                devices.append(HOST)
        return inputs, devices

    def _deliver(self, value, target: Target, name: str, from_graph: bool):
        """Output `name` at its target.  A graph's outputs are its fixed buffers: they are
        moved or copied out, never handed out themselves."""
        if target.buffer is not None:
            self.write_into(name, target.buffer, value)
            return target.buffer._value
        if from_graph:
            moved = value if target.device is None else self.move(value, target.device)
            return _fresh_copy(value) if moved is value else moved
        return value

    def write_into(self, name: str, buffer: OrtValue, value) -> None:
        """Copy output `name` into a preallocated tensor, after onnxruntime's checks of its
        element type and shape (InvalidArgument: 'Got' is the buffer, 'Expected' the result)."""
        dst = buffer._tensor(f"binding output '{name}'")
        if value is None or isinstance(value, (list, dict)):
            what = "an empty optional" if value is None else "a sequence" if isinstance(value, list) else "a map"
            raise InvalidArgument(f"Output '{name}' is {what}: it cannot be written into a preallocated tensor")
        check_dims("output", name, tuple(dst.shape), tuple(value.shape))
        if dst.dtype != value.dtype:
            raise InvalidArgument(f"Unexpected output data type. Actual: ({OrtValue(dst).data_type()}) , "
                                  f"expected: ({OrtValue(value).data_type()})")
        kind = kind_of(dst)
        if kind_of(value) is not kind:
            value = self.move(value, kind.name)
        kind.copy_into(dst, value, wait=False)

    def move(self, value, device: str):
        """`value` on `device` (a device kind name), through the providers' host copies."""
        src = device_of(value)[0]
        if src == device or value is None:
            return value
        if src != HOST:
            value = self.provider_on(src).copy_to_host(value)
        if device != HOST:
            value = self.provider_on(device).copy_from_host(value)
        return value


_DIGITS = re.compile(r"-?[0-9]+")
# Host runs shorter than this go one at a time when several threads run sessions at once:
# such a run is mostly Python between NumPy calls holding the GIL, and two of them at once only
# queue for it.  8 threads sharing one session, 2-core machine: the 4x32 BERT (0.7 ms a run)
# gave 0.59x the one-thread throughput two at a time and 0.88x one at a time; squeezenet
# (7.5 ms) 1.26x two at a time and 0.89x one at a time.
SHORT_RUN_NS = 2_000_000


class _HostHeap:
    """The CPU arena as the shrink list sees it: the C heap (memory/host_heap.py)."""

    @staticmethod
    def shrink() -> None:
        host_heap.give_back()


_HOST_HEAP = _HostHeap()


def _memory_root(a: np.ndarray) -> np.ndarray:
    """The array that owns the memory `a` views (`a` itself when it owns it)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _constant_roots(graph: Graph) -> set:
    """ids of the memory owners of every constant a run may hand out: the initializers and the
    tensor attributes (Constant values) of the graph and its subgraphs."""
    roots = {id(_memory_root(v)) for v in graph.initializers.values() if isinstance(v, np.ndarray)}
    for node in graph.nodes:
        for v in node.attrs.values():
            if isinstance(v, np.ndarray):
                roots.add(id(_memory_root(v)))
        for sub in node.subgraphs():
            roots |= _constant_roots(sub)
    return roots


def _fresh_copy(value):
    if isinstance(value, list):
        return [_fresh_copy(v) for v in value]
    if value is None or isinstance(value, dict):
        return value
    return value.copy()


def run_scope(providers, inputs=None):
    """The providers' run contexts entered together (a device provider selects its device and
    stream there); nothing to enter for the CPU.  With a run's ``inputs``, their signature
    (ortgpu.memory.pattern_key) lets device providers replay memory patterns."""
    scopes = [p.run_context for p in providers if hasattr(p, "run_context")]
    if not scopes:
        return contextlib.nullcontext()
    key = pattern_key(inputs) if inputs is not None else None
    if key is not None:
        scopes = [functools.partial(scope, pattern_key=key) for scope in scopes]
    return _entered(scopes)


@contextlib.contextmanager
def _entered(scopes):
    with contextlib.ExitStack() as stack:
        for scope in scopes:
            stack.enter_context(scope())
        yield
