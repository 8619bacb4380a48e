"""InferenceSession: load, partition, plan, and run with onnxruntime's checks and messages."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
import weakref
from time import perf_counter_ns

import numpy as np
import onnx
import onnx.defs

from ortgpu import custom_op_types, custom_ops, providers_select
from ortgpu.devices import kind_of
from ortgpu.dtypes import np_dtype, onnx_code, shape_of, tensor_type_str, type_str
from ortgpu.errors import Fail, InvalidArgument, InvalidGraph, _OrtError
from ortgpu.optimizer import fused_functions, optimize
from ortgpu.executor import Plan
from ortgpu.partition import HOST
from ortgpu.providers.cuda.graphs import DEFAULT_ID as DEFAULT_GRAPH_ID
from ortgpu.providers.cuda.graphs import GraphRunner, capture_partition, check_graph_id_entry, graph_id_of
from ortgpu.graph import from_proto, tensor_to_array
from ortgpu.loading import prepare_model
from ortgpu.memory.pattern import pattern_key
from ortgpu.model_writer import save_optimized_model
from ortgpu.options import RunOptions, SessionOptions
from ortgpu.precision.runtime import apply_precision, match_initializer
from ortgpu.profiling.recorder import Recorder
from ortgpu.providers.base import ExecutionProvider
from ortgpu.providers.registry import schema_for
from ortgpu.values import OrtValue

_log = logging.getLogger("ortgpu")


class NodeArg:
    """Name, type string and shape of a graph input or output, as onnxruntime reports them."""

    def __init__(self, name: str, type: str, shape):
        self.name = name
        self.type = type
        self.shape = shape

    def __repr__(self):
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"


class ModelMetadata:
    def __init__(self, model: onnx.ModelProto):
        self.producer_name = model.producer_name
        self.graph_name = model.graph.name
        self.domain = model.domain
        self.description = model.doc_string
        self.graph_description = model.graph.doc_string
        self.version = model.model_version
        self.custom_metadata_map = {p.key: p.value for p in model.metadata_props}


def _node_arg(vi: onnx.ValueInfoProto) -> NodeArg:
    return NodeArg(vi.name, type_str(vi.type), shape_of(vi.type))


class InferenceSession:
    """Runs an ONNX model: ``InferenceSession(path | bytes | ModelProto, sess_options, providers)``."""

    def __init__(self, path_or_bytes, sess_options: SessionOptions | None = None, providers=None,
                 provider_options=None, **kwargs):
        if sess_options is not None and not isinstance(sess_options, SessionOptions):
            raise TypeError(f"sess_options must be an ortgpu SessionOptions, not {type(sess_options).__name__}")
        self._sess_options = sess_options if sess_options is not None else SessionOptions()
        # onnxruntime retries once with the CPU when the provider arguments are bad, unless
        # the caller passes enable_fallback=0.
        self._enable_fallback = int(kwargs.get("enable_fallback", 1)) == 1
        # onnxruntime's keyword: optimizer passes to skip, by name
        self._disabled_optimizers = frozenset(kwargs.get("disabled_optimizers") or ())
        self._fallback_providers = ["CPUExecutionProvider"]
        self._model_source = path_or_bytes
        if isinstance(path_or_bytes, str) or hasattr(path_or_bytes, "__fspath__"):
            self._model_path = os.fspath(path_or_bytes)
        else:
            self._model_path = None
        so = self._sess_options
        # Profiling (SessionOptions.enable_profiling) starts before loading, as in onnxruntime.
        self._recorder = Recorder(so.profile_file_prefix) if so.enable_profiling else None
        self._profiling_start_ns = self._recorder.start_ns if self._recorder else 0
        t0 = perf_counter_ns()
        model, self._load_kind = prepare_model(path_or_bytes, so._free_dims_by_name,
                                               so._free_dims_by_denotation)
        # custom ops (ortgpu.custom_ops): this session's own, and their outputs' types
        model, self._custom_ops = custom_op_types.prepare(model, kwargs.get("custom_ops"))
        # ortgpu.precision=fp16|bf16: weights converted once, graph inputs and outputs kept
        model, self._precision_report = apply_precision(model, so)
        t1 = perf_counter_ns()
        self._model = model
        self._opsets = {("" if i.domain == "ai.onnx" else i.domain): i.version for i in model.opset_import}
        self._init_io(model)
        self._create_providers(providers, provider_options)
        if self._precision_report is not None and self._precision_report.target_name == "bfloat16" and any(
                p.device != "cpu" for p in self._providers):
            warnings.warn("ortgpu.precision=bf16: CuPy has no bfloat16 arrays, so bfloat16 nodes run on the "
                          "CPU provider; use fp16 on CUDA", RuntimeWarning, stacklevel=2)
        if self._recorder is not None:
            # onnxruntime's Python API serializes a ModelProto: it loads an array then
            loading = "model_loading_array" if self._load_kind == "model_loading_proto" else self._load_kind
            self._recorder.span(loading, t0, t1)
            self._recorder.span("session_initialization", t1, perf_counter_ns())
            # like onnxruntime, a session that is never told end_profiling() writes its trace
            # when it is collected
            self._profile_finalizer = weakref.finalize(self, self._recorder.finish)

    def disable_fallback(self) -> None:
        self._enable_fallback = False

    def enable_fallback(self) -> None:
        self._enable_fallback = True

    # --- construction -------------------------------------------------------------------
    def _init_io(self, model: onnx.ModelProto) -> None:
        g = model.graph
        init_names = {t.name for t in g.initializer} | {s.values.name for s in g.sparse_initializer}
        self._all_inputs = list(g.input)
        self._inputs = [vi for vi in g.input if vi.name not in init_names]
        # Old IR versions list every initializer among the inputs; those are constants there.
        self._overridable = ([vi for vi in g.input if vi.name in init_names]
                             if model.ir_version >= 4 else [])
        self._feedable = {vi.name for vi in self._inputs} | {vi.name for vi in self._overridable}
        self._required = [vi.name for vi in self._inputs if vi.type.WhichOneof("value") != "optional_type"]
        inferred = {vi.name: vi for vi in g.value_info}
        self._outputs = []
        for vi in g.output:
            has_shape = vi.type.WhichOneof("value") and (
                vi.type.WhichOneof("value") != "tensor_type" or vi.type.tensor_type.HasField("shape"))
            self._outputs.append(vi if has_shape or vi.name not in inferred else inferred[vi.name])

    def _create_providers(self, providers, provider_options) -> None:
        if providers is not None and not isinstance(providers, str) and any(
                isinstance(p, ExecutionProvider) for p in providers):
            self._install(_provider_instances(providers))
            return
        try:
            created = providers_select.create(providers_select.normalize(providers, provider_options))
        except (ValueError, RuntimeError) as e:  # bad arguments or options: onnxruntime retries on the CPU
            if not self._enable_fallback or isinstance(e, providers_select.UnknownProviderError):
                raise
            warnings.warn(f"EP Error {e} when using {providers}\nFalling back to {self._fallback_providers} "
                          f"and retrying.", RuntimeWarning, stacklevel=3)
            created = providers_select.create(providers_select.normalize(self._fallback_providers, None))
            self._enable_fallback = False  # onnxruntime falls back only once
        self._install(created)

    def _install(self, created) -> None:
        """Optimize, partition and plan the model for the created providers."""
        custom_ops.attach(created, self._custom_ops)  # this session's custom ops, no other's
        graph = from_proto(self._model.graph, self._opsets)
        for name, value in self._sess_options._initializers.items():
            value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
            graph.initializers[name] = match_initializer(value, graph.initializers.get(name))
        check_ops_registered(graph, created)
        so = self._sess_options
        self._optimizations = optimize(graph, so.graph_optimization_level, created,
                                       {vi.name for vi in self._overridable}, self._disabled_optimizers)
        if so.log_severity_level == 0:  # VERBOSE: what each pass did, and which changed nothing
            _log_optimizations(self._optimizations)
        if so.optimized_model_filepath:  # as onnxruntime: the graph after the passes, before placement
            save_optimized_model(self._model, graph, so.optimized_model_filepath, so._config)
        graph_provider = next((p for p in created if getattr(p, "graph_capture_enabled", False)), None)
        # a model that cannot be captured is refused before anything touches the device
        capture_part = capture_partition(graph, created, graph_provider) if graph_provider else None
        init_cache: dict = {}  # device copies of initializers, shared by every plan of this graph
        with _run_scope(created):  # initializers used on a device are copied there now
            plan = Plan(graph, created, init_cache=init_cache)
            graphs = None if capture_part is None else GraphRunner(
                Plan(graph, created, part=capture_part, init_cache=init_cache), graph_provider)
        # Only a fully built plan replaces the old one, so a failed set_providers leaves the
        # session as it was.
        self._providers, self._plan, self._graphs = created, plan, graphs
        self._graph, self._init_cache, self._plans = graph, init_cache, {}
        if self._recorder is not None:
            self._recorder.attach(created)
        self._input_index = {n: i for i, n in enumerate(plan.input_names)}
        self._output_index = {n: i for i, n in enumerate(plan.output_names)}
        self._input_meta = {vi.name: vi for vi in self._all_inputs}
        self._output_meta = {vi.name: vi for vi in self._outputs}
        self._init_values = {n: graph.initializers[n] for n in plan.input_names if n in graph.initializers}
        if self._sess_options.log_severity_level == 0:  # VERBOSE, as onnxruntime logs its placement
            _log_placement(plan)

    # --- onnxruntime's query API --------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._outputs]

    def get_overridable_initializers(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._overridable]

    def get_modelmeta(self) -> ModelMetadata:
        return ModelMetadata(self._model)

    def get_providers(self) -> list[str]:
        return [p.name for p in self._providers]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {p.name: p.get_options() for p in self._providers}

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def set_providers(self, providers=None, provider_options=None) -> None:
        """Re-create the providers (and the plan) for this session, as onnxruntime does."""
        self._create_providers(providers, provider_options)

    def get_provider_assignment(self, include_subgraphs: bool = False) -> list[tuple[str, str, str]]:
        """(node name, op type, provider) for each top-level step, in execution order.  Copies
        between devices are steps of op type MemcpyToHost / MemcpyFromHost (on the device
        provider), as onnxruntime names its copy nodes.  `include_subgraphs` adds the steps of
        If/Loop/Scan bodies after their node, named 'node/attribute/step'."""
        return self._plan.placement(include_subgraphs)

    def get_memory_stats(self) -> dict[str, dict]:
        """Device memory statistics of each provider that has an arena, by provider name (an
        ortgpu extension: onnxruntime has no Python API for them).  Per provider: the arena's
        bytes_in_use, max_bytes_in_use, bytes_reserved, bytes_limit, largest_free_block,
        num_allocs, num_frees, num_reserves, ... (ortgpu.memory.ArenaStats), "mem_pattern"
        (recordings, replays, the last plan's peak against its lower bound) and "staging"
        (pinned buffers).  The CPU provider has none."""
        return {p.name: p.memory_stats() for p in self._providers if hasattr(p, "memory_stats")}

    def get_precision_report(self):
        """What the ``ortgpu.precision`` switch did (an ortgpu extension): a ConversionReport
        listing the nodes kept in float32 and why, or None for a float32 session."""
        return self._precision_report

    # --- profiling (ortgpu.profiling) ---------------------------------------------------
    def end_profiling(self) -> str:
        """Stop profiling and write the trace (onnxruntime's JSON); its path, or '' when
        profiling was not enabled or has ended already."""
        rec, self._recorder = self._recorder, None
        if rec is None:
            return ""
        self._profile_finalizer.detach()
        return rec.finish()

    def get_profiling_start_time_ns(self) -> int:
        """Wall-clock time (ns since the epoch) at which profiling started; 0 when disabled."""
        return self._profiling_start_ns

    # --- running ------------------------------------------------------------------------
    def run(self, output_names, input_feed: dict, run_options: RunOptions | None = None) -> list:
        if not isinstance(input_feed, dict):
            raise TypeError(f"input_feed must be a dict of input name to value, not {type(input_feed).__name__}")
        graph_id = _check_run_options(run_options)
        rec = self._recorder
        t0 = perf_counter_ns() if rec is not None else 0
        out_idx = self._output_positions(output_names)
        args = self._bind_inputs(input_feed)
        with _run_scope(self._providers, args if self._sess_options.enable_mem_pattern else None):
            if self._graphs is not None:
                results = self._graphs.run(graph_id, args)
            else:
                results = self._plan.run(args) if rec is None else self._plan.run_profiled(args, rec)
            outputs = [_to_user(results[i]) for i in out_idx]
        if rec is not None:
            rec.span("model_run", t0, perf_counter_ns())
        return outputs

    def _output_positions(self, output_names) -> list[int]:
        if not output_names:
            return list(range(len(self._plan.output_names)))
        if isinstance(output_names, str):
            raise TypeError("output_names must be a list of output names (or None), not a str")
        pos = []
        for name in output_names:
            if name not in self._output_index:
                raise InvalidArgument(f"Invalid output name:{name}")
            pos.append(self._output_index[name])
        return pos

    def _check_feed_names(self, feed: dict) -> None:
        # onnxruntime's order: missing required inputs (ValueError, from its Python layer)
        # first, then unknown names; each value's type and shape come later.
        missing = [n for n in self._required if n not in feed]
        if missing:
            raise ValueError(f"Required inputs ({missing}) are missing from input feed ({list(feed)}).")
        for name in feed:
            if name not in self._feedable:
                raise InvalidArgument(f"Invalid input name: {name}")

    def _bind_inputs(self, feed: dict) -> list:
        self._check_feed_names(feed)
        args = []
        for name in self._plan.input_names:
            if name in feed:
                args.append(check_feed(name, feed[name], self._input_meta[name].type))
            else:
                args.append(self._init_values.get(name))  # an optional input left out is None
        return args

    # --- values on devices: OrtValue, IOBinding, CUDA graphs (ortgpu.device_run) --------------
    def io_binding(self):
        """A new IOBinding of this session (ortgpu.iobinding)."""
        from ortgpu.iobinding import IOBinding  # noqa: PLC0415
        return IOBinding(self)

    def run_with_iobinding(self, iobinding, run_options: RunOptions | None = None) -> None:
        """Run with the inputs and outputs bound in `iobinding`; read the results with its
        get_outputs() / copy_outputs_to_cpu().  Errors of the run are RuntimeError('Error in
        execution: ...') as in onnxruntime, caused by ortgpu's typed error."""
        from ortgpu.device_run import run_on_devices  # noqa: PLC0415
        from ortgpu.iobinding import IOBinding  # noqa: PLC0415
        if not isinstance(iobinding, IOBinding):
            raise TypeError(f"run_with_iobinding needs an IOBinding from session.io_binding(), "
                            f"not {type(iobinding).__name__}")
        if iobinding._session is not self:
            raise ValueError("IOBinding must be used with the session that created it.")
        b = iobinding._iobinding
        check_graph_id_entry(run_options)
        try:
            graph_id = _check_run_options(run_options)
            if not b.outputs:
                raise InvalidArgument("At least one output should be requested.")
            missing = [n for n in self._required if n not in b.inputs]
            if missing:
                raise InvalidArgument(f"Required inputs ({missing}) are missing from the IOBinding "
                                      f"(bound: {list(b.inputs)}).")
            fetch = []
            for name, target in b.outputs.items():
                if name not in self._output_index:
                    raise InvalidArgument(f"Invalid output name: {name}")
                fetch.append((self._output_index[name], target))
            b.results = run_on_devices(self, b.inputs, fetch, run_options, graph_id)
        except _OrtError as e:
            raise RuntimeError(f"Error in execution: {e.message}") from e

    def run_with_ort_values(self, output_names, input_dict_ort_values: dict,
                            run_options: RunOptions | None = None) -> list:
        """Run with OrtValue inputs, on whatever device they are (a device input is not copied
        through the host); the outputs are CPU OrtValues, as onnxruntime returns them (bind
        outputs with io_binding() to keep them on a device)."""
        from ortgpu.device_run import Target, run_on_devices  # noqa: PLC0415
        if not isinstance(input_dict_ort_values, dict):
            raise TypeError(f"input_dict_ort_values must be a dict of input name to OrtValue, "
                            f"not {type(input_dict_ort_values).__name__}")
        graph_id = _check_run_options(run_options)
        self._check_feed_names(input_dict_ort_values)
        for name, v in input_dict_ort_values.items():
            if not isinstance(v, OrtValue):
                raise TypeError(f"run_with_ort_values: input '{name}' must be an OrtValue, not {type(v).__name__}")
        fetch = [(i, Target("cpu")) for i in self._output_positions(output_names)]
        return run_on_devices(self, input_dict_ort_values, fetch, run_options, graph_id)

    def create_ortvalue_from_shape_and_type(self, shape, element_type, device_type: str,
                                            device_id: int = 0, vendor_id=-1) -> OrtValue:
        return OrtValue.ortvalue_from_shape_and_type(shape, element_type, device_type, device_id, vendor_id)

    def release_captured_graph(self, graph_annotation_id: int = 0) -> None:
        """Free the CUDA graph captured for this gpu_graph_id (a no-op without one)."""
        if self._graphs is not None:
            self._graphs.release(int(graph_annotation_id))

    def _device_key(self, device: tuple[str, int], what: str) -> str:
        """The partitioner's device for a value on (device kind, device id), or InvalidArgument
        when no provider of this session runs there."""
        name, device_id = device
        if name == "cpu":
            return HOST
        for p in self._providers:
            if p.device == name:
                own = getattr(p, "device_id", 0)
                if own != device_id:
                    raise InvalidArgument(f"{what} is on {name}:{device_id} but {p.name} of this session "
                                          f"runs on {name}:{own}")
                return name
        raise InvalidArgument(f"{what} is on device '{name}' but no provider of this session runs there "
                              f"(providers: {[p.name for p in self._providers]})")

    def _provider_on(self, device: str):
        return next(p for p in self._providers if p.device == device)

    def _plan_for(self, input_devices: tuple, output_devices: tuple) -> Plan:
        """The plan whose inputs arrive on `input_devices` and whose outputs are delivered on
        `output_devices` (partition.ANY: where produced), compiled once and kept."""
        if all(d == HOST for d in input_devices) and all(d == HOST for d in output_devices):
            return self._plan
        key = (input_devices, output_devices)
        plan = self._plans.get(key)
        if plan is None:
            with _run_scope(self._providers):
                plan = Plan(self._graph, self._providers, input_devices=list(input_devices),
                            output_devices=list(output_devices), init_cache=self._init_cache)
            self._plans[key] = plan
        return plan


def _check_run_options(run_options) -> int:
    """Refuse a wrong run_options or a set terminate flag; the run's gpu_graph_id."""
    if run_options is None:
        return DEFAULT_GRAPH_ID
    if not isinstance(run_options, RunOptions):
        raise TypeError(f"run_options must be an ortgpu RunOptions, not {type(run_options).__name__}")
    graph_id = graph_id_of(run_options)
    if run_options.terminate:
        raise Fail("Exiting due to terminate flag being set to true.")
    return graph_id


def _run_scope(providers, inputs=None):
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


def _provider_instances(providers) -> list:
    """ExecutionProvider instances given directly (an ortgpu extension: tests run a device
    double this way); names among them are created as usual; the CPU is kept as last resort."""
    out = []
    for p in providers:
        if isinstance(p, ExecutionProvider):
            out.append(p)
        else:
            out.extend(providers_select.create(providers_select.normalize([p], None)[:1]))
    if not any(p.device == "cpu" for p in out):
        out.extend(providers_select.create([("CPUExecutionProvider", {})]))
    return out


def _log_optimizations(done: dict[str, int]) -> None:
    for name, n in done.items():
        if n:
            _log.info("optimizer: %s made %d rewrites", name, n)
        else:
            _log.info("optimizer: %s changed nothing", name)


def _log_placement(plan) -> None:
    counts: dict[str, int] = {}
    for _, op, prov in plan.placement(include_subgraphs=True):
        if not op.startswith("Memcpy"):
            counts[prov] = counts.get(prov, 0) + 1
    copies = sum(1 for _, op, _ in plan.placement(include_subgraphs=True) if op.startswith("Memcpy"))
    _log.info("placement: %s; %d copy steps", ", ".join(f"{n} nodes on {p}" for p, n in counts.items()),
              copies)
    for line in plan.describe():
        _log.info("  %s", line)


def _to_user(value):
    if isinstance(value, np.ndarray) or value is None:
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, list):
        return [_to_user(v) for v in value]
    if isinstance(value, dict):  # a map value (ZipMap)
        return {k: _to_user(v) for k, v in value.items()}
    if hasattr(value, "__cuda_array_interface__"):  # a device array (CuPy): run() returns NumPy
        return value.get()
    kind = kind_of(value)
    return value if kind is None else kind.to_numpy(value)  # another device's array


def check_feed(name: str, value, tp: onnx.TypeProto, keep_device: bool = False):
    """`value` as the graph wants it, or InvalidArgument naming the input, expected and actual.
    Tensors become NumPy arrays, unless `keep_device`: then a device array (CuPy, ...) is
    checked by its dtype and shape only and stays where it is."""
    kind = tp.WhichOneof("value")
    if kind == "tensor_type":
        return _check_tensor(name, value, tp.tensor_type, keep_device)
    if kind == "sequence_type":
        if not isinstance(value, (list, tuple)):
            got = "a tensor" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
            raise InvalidArgument(f"input with name: '{name}' expected to be of type: {_ONNX_TYPE_SEQUENCE} "
                                  f"({type_str(tp)}) but received {got}")
        return [check_feed(f"{name}[{i}]", v, tp.sequence_type.elem_type, keep_device)
                for i, v in enumerate(value)]
    if kind == "optional_type":
        if value is None:
            return None
        return check_feed(name, value, tp.optional_type.elem_type, keep_device)
    return value


# onnxruntime's ONNXType enum value for a sequence, which its message prints.
_ONNX_TYPE_SEQUENCE = 3


def check_ops_registered(graph, providers) -> None:
    """Refuse, as onnxruntime does, an op no schema defines: InvalidGraph in an onnx domain,
    Fail ("not a registered function/op") in a custom domain that no provider has a kernel for."""
    for node in graph.nodes:
        for sub in node.subgraphs():
            check_ops_registered(sub, providers)
        if schema_for(node.op_type, node.opset, node.domain) is not None:
            continue
        if node.domain == fused_functions.DOMAIN and node.op_type in fused_functions.FUNCTIONS:
            continue  # a fused op: its kernel, or else its function body, runs it
        if node.domain in _onnx_domains():
            raise InvalidGraph(f'This is an invalid model. In Node, ("{node.name}", {node.op_type}, '
                               f'"{node.domain}", -1) , Error No Op registered for {node.op_type} with '
                               f"domain_version of {node.opset}")
        if not any(p.kernel_for(node.op_type, node.domain, node.opset) is not None for p in providers):
            raise Fail(f"Fatal error: {node.domain}:{node.op_type}(-1) is not a registered function/op "
                       f"(node '{node.name}', opset {node.opset} of domain '{node.domain}')")


@functools.lru_cache(maxsize=1)
def _onnx_domains() -> frozenset:
    return frozenset(s.domain for s in onnx.defs.get_all_schemas_with_history()) | {""}


def _check_tensor(name: str, value, tt: onnx.TypeProto.Tensor, keep_device: bool = False):
    if isinstance(value, OrtValue):
        value = value._value
    if keep_device and not isinstance(value, np.ndarray) and kind_of(value) is not None:
        check_tensor_meta(name, value.dtype, value.shape, tt)
        return value
    expected = np_dtype(tt.elem_type) if tt.elem_type else None
    if not isinstance(value, np.ndarray):
        if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
            value = value.get()  # a CuPy array: run() feeds go through the host
        elif hasattr(value, "__array__") or isinstance(value, np.generic):
            try:
                value = np.asarray(value)
            except Exception as e:  # noqa: BLE001 - any array-like that refuses conversion
                raise InvalidArgument(f"Input '{name}': cannot convert {type(value).__name__} to a "
                                      f"NumPy array ({e})") from None
        elif isinstance(value, (list, tuple, int, float, bool, str, bytes)):
            want = expected if expected is not None and expected != object else None
            try:
                value = np.asarray(value, dtype=want)
            except (TypeError, ValueError) as e:
                raise InvalidArgument(f"Input '{name}': could not create a {tensor_type_str(tt.elem_type)} "
                                      f"from the given {type(value).__name__} ({e})") from None
        else:
            raise InvalidArgument(f"Input '{name}' must be a numpy array, got {type(value).__name__}")
    if value.dtype.kind in "US":
        value = value.astype(object)
    check_tensor_meta(name, value.dtype, value.shape, tt)
    return value


def check_tensor_meta(name: str, dtype, shape, tt: onnx.TypeProto.Tensor) -> None:
    """The element type, rank and fixed dimensions of a tensor fed as input `name`, against the
    graph's declaration; InvalidArgument with onnxruntime's messages."""
    expected = np_dtype(tt.elem_type) if tt.elem_type else None
    if expected is not None and dtype != expected:
        try:
            actual = tensor_type_str(onnx_code(dtype))
        except TypeError:
            actual = str(dtype)
        raise InvalidArgument(f"Unexpected input data type. Actual: ({actual}) , "
                              f"expected: ({tensor_type_str(tt.elem_type)})")
    if tt.HasField("shape"):
        dims = tt.shape.dim
        if len(dims) != len(shape):
            raise InvalidArgument(f"Invalid rank for input: {name} Got: {len(shape)} Expected: {len(dims)} "
                                  f"Please fix either the inputs/outputs or the model.")
        bad = [(i, shape[i], d.dim_value) for i, d in enumerate(dims)
               if d.HasField("dim_value") and d.dim_value >= 0 and shape[i] != d.dim_value]
        if bad:
            lines = "".join(f" index: {i} Got: {g} Expected: {e}\n" for i, g, e in bad)
            raise InvalidArgument(f"Got invalid dimensions for input: {name} for the following indices\n"
                                  f"{lines} Please fix either the inputs/outputs or the model.")


__all__ = ["InferenceSession", "NodeArg", "ModelMetadata", "tensor_to_array"]
