"""InferenceSession: load, partition, plan, and run with onnxruntime's checks and messages."""
from __future__ import annotations

import functools
import logging
import os
import warnings
import weakref
from time import perf_counter_ns

import numpy as np
import onnx
import onnx.defs

from ortgpu import custom_op_types, custom_ops, fused_ops, logger, providers_select
from ortgpu.devices import kind_of
from ortgpu.dtypes import shape_of, type_str
from ortgpu.errors import InvalidArgument, InvalidGraph, Fail, _OrtError
from ortgpu.feeds import ModelIO
from ortgpu.functions import expand_unimplemented
from ortgpu.graph import from_proto, tensor_to_array
from ortgpu.graph_capture import check_graph_id_entry
from ortgpu.iobinding import IOBinding
from ortgpu.loading import prepare_model
from ortgpu.model_writer import save_optimized_model
from ortgpu.optimizer import optimize
from ortgpu.options import RunOptions, SessionOptions
from ortgpu.precision.runtime import apply_precision, match_initializer
from ortgpu.profiling.recorder import Recorder
from ortgpu.providers.base import ExecutionProvider
from ortgpu.providers.registry import schema_for
from ortgpu.run_core import HOST_TARGET, RunCore, Target, check_run_options
from ortgpu.threads import inter_op_threads, intra_op_threads
from ortgpu.session_extensions import SessionExtensions
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


class InferenceSession(SessionExtensions):
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
                                               so._free_dims_by_denotation, so._config,
                                               so._external_initializers)
        # custom ops (ortgpu.custom_ops): this session's own, and their outputs' types
        model, self._custom_ops = custom_op_types.prepare(model, kwargs.get("custom_ops"))
        # ortgpu.precision=fp16|bf16: weights converted once, graph inputs and outputs kept
        model, self._precision_report = apply_precision(model, so)
        t1 = perf_counter_ns()
        self._model = model
        self._opsets = {("" if i.domain == "ai.onnx" else i.domain): i.version for i in model.opset_import}
        self._io = ModelIO.of(model)
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
            self._recorder.setup_us["load_us"] = (t1 - t0) // 1000
            # like onnxruntime, a session that is never told end_profiling() writes its trace
            # when it is collected
            self._profile_finalizer = weakref.finalize(self, self._recorder.finish)

    def disable_fallback(self) -> None:
        self._enable_fallback = False

    def enable_fallback(self) -> None:
        self._enable_fallback = True

    # --- construction -------------------------------------------------------------------
    def _create_providers(self, providers, provider_options) -> None:
        if providers is not None and not isinstance(providers, str) and any(
                isinstance(p, ExecutionProvider) for p in providers):
            self._install(_provider_instances(providers))
            return
        try:
            created = providers_select.create(providers_select.apply_env_allocators(
                providers_select.normalize(providers, provider_options), self._sess_options))
        except (ValueError, RuntimeError) as e:  # bad arguments or options: onnxruntime retries on the CPU
            if not self._enable_fallback:
                raise
            providers_select.report_fallback(e, providers, self._fallback_providers)
            created = providers_select.create(providers_select.normalize(self._fallback_providers, None))
            self._enable_fallback = False  # onnxruntime falls back only once
        self._install(created)

    def _install(self, created) -> None:
        """Optimize, partition and plan the model for the created providers."""
        t_start = perf_counter_ns()
        custom_ops.attach(created, self._custom_ops)  # this session's custom ops, no other's
        graph = from_proto(self._model.graph, self._opsets)
        if not self._io.overridable:  # initializers listed among the inputs of an IR < 4 model are
            # constants there, as in onnxruntime: no feed replaces them, so the plan treats them as
            # initializers (kernels keep forms prepared from them; a run does not walk them)
            graph.inputs = [v for v in graph.inputs if v.name not in graph.initializers]
        for name, value in self._sess_options._initializers.items():
            value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
            graph.initializers[name] = match_initializer(value, graph.initializers.get(name))
        check_ops_registered(graph, created)
        so = self._sess_options
        t_opt = perf_counter_ns()
        self._optimizations = optimize(graph, so.graph_optimization_level, created,
                                       {vi.name for vi in self._io.overridable}, self._disabled_optimizers)
        if logger.is_verbose(so):  # VERBOSE: what each pass did, and which changed nothing
            with logger.scope(so):
                _log_optimizations(self._optimizations)
        if so.optimized_model_filepath:  # as onnxruntime: the graph after the passes, before placement
            save_optimized_model(self._model, graph, so.optimized_model_filepath, so._config)
        expand_unimplemented(graph, created)  # ops no provider runs, by their function bodies
        t_plan = perf_counter_ns()
        core = RunCore(graph, created, self._io, self._recorder, so.enable_mem_pattern, intra_op_threads(so),
                       inter_op_threads(so), cpu_arena=so.enable_cpu_mem_arena)
        if self._recorder is not None:  # the set-up phases, in the session_initialization event's args
            self._recorder.setup_us.update(convert_us=(t_opt - t_start) // 1000,
                                           optimize_us=(t_plan - t_opt) // 1000,
                                           partition_plan_compile_us=(perf_counter_ns() - t_plan) // 1000)
        # Only a fully built core replaces the old one, so a failed set_providers leaves the
        # session as it was.
        self._providers, self._core = created, core
        if self._recorder is not None:
            self._recorder.attach(created)
        if logger.is_verbose(self._sess_options):  # VERBOSE, as onnxruntime logs its placement
            with logger.scope(self._sess_options):
                _log_placement(core.plan)

    # --- onnxruntime's query API --------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._io.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._io.outputs]

    def get_overridable_initializers(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._io.overridable]

    def get_modelmeta(self) -> ModelMetadata:
        return ModelMetadata(self._model)

    def get_providers(self) -> list[str]:
        return [p.name for p in self._providers]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {p.name: p.get_options() for p in self._providers}

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def set_providers(self, providers=None, provider_options=None) -> None:
        """Re-create the providers (and the plan) for this session, as onnxruntime does: an
        error (an unknown name, a bad option) is raised, never answered with a CPU fallback."""
        fallback, self._enable_fallback = self._enable_fallback, False
        try:
            self._create_providers(providers, provider_options)
        finally:
            self._enable_fallback = fallback

    def get_provider_assignment(self, include_subgraphs: bool = False) -> list[tuple[str, str, str]]:
        """(node name, op type, provider) for each top-level step, in execution order.  Copies
        between devices are steps of op type MemcpyToHost / MemcpyFromHost (on the device
        provider), as onnxruntime names its copy nodes.  `include_subgraphs` adds the steps of
        If/Loop/Scan bodies after their node, named 'node/attribute/step'."""
        return self._core.plan.placement(include_subgraphs)

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
        self._core.recorder = None
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
        graph_id = check_run_options(run_options)
        core = self._core
        fetch = (core.fetch_all_on_host if not output_names and core.output_names
                 else [(i, HOST_TARGET) for i in core.output_positions(output_names)])
        self._io.check_feed_names(input_feed)
        with logger.scope(run_options, self._sess_options):
            return [_to_user(v) for v in self._core.run(input_feed, fetch, graph_id, run_options)]

    def io_binding(self) -> IOBinding:
        """A new IOBinding of this session (ortgpu.iobinding)."""
        return IOBinding(self)

    def run_with_iobinding(self, iobinding, run_options: RunOptions | None = None) -> None:
        """Run with the inputs and outputs bound in `iobinding`; read the results with its
        get_outputs() / copy_outputs_to_cpu().  Errors of the run are RuntimeError('Error in
        execution: ...') as in onnxruntime, caused by ortgpu's typed error."""
        if not isinstance(iobinding, IOBinding):
            raise TypeError(f"run_with_iobinding needs an IOBinding from session.io_binding(), "
                            f"not {type(iobinding).__name__}")
        if iobinding._session is not self:
            raise ValueError("IOBinding must be used with the session that created it.")
        b = iobinding._iobinding
        check_graph_id_entry(run_options)
        try:
            graph_id = check_run_options(run_options)
            if not b.outputs:
                raise InvalidArgument("At least one output should be requested.")
            missing = [n for n in self._io.required if n not in b.inputs]
            if missing:
                raise InvalidArgument(f"Required inputs ({missing}) are missing from the IOBinding "
                                      f"(bound: {list(b.inputs)}).")
            fetch = []
            for name, target in b.outputs.items():
                if name not in self._core.output_index:
                    raise InvalidArgument(f"Invalid output name: {name}")
                fetch.append((self._core.output_index[name], target))
            values = self._core.run(b.inputs, fetch, graph_id, run_options, on_devices=True)
            b.results = [self._output_value(pos, target, v) for (pos, target), v in zip(fetch, values)]
        except _OrtError as e:
            raise RuntimeError(f"Error in execution: {e.message}") from e

    def run_with_ort_values(self, output_names, input_dict_ort_values: dict,
                            run_options: RunOptions | None = None) -> list:
        """Run with OrtValue inputs, on whatever device they are (a device input is not copied
        through the host); the outputs are CPU OrtValues, as onnxruntime returns them (bind
        outputs with io_binding() to keep them on a device)."""
        if not isinstance(input_dict_ort_values, dict):
            raise TypeError(f"input_dict_ort_values must be a dict of input name to OrtValue, "
                            f"not {type(input_dict_ort_values).__name__}")
        graph_id = check_run_options(run_options)
        self._io.check_feed_names(input_dict_ort_values)
        for name, v in input_dict_ort_values.items():
            if not isinstance(v, OrtValue):
                raise TypeError(f"run_with_ort_values: input '{name}' must be an OrtValue, not {type(v).__name__}")
        fetch = [(i, Target("cpu")) for i in self._core.output_positions(output_names)]
        values = self._core.run(input_dict_ort_values, fetch, graph_id, run_options, on_devices=True)
        return [self._output_value(pos, target, v) for (pos, target), v in zip(fetch, values)]

    def _output_value(self, pos: int, target: Target, value) -> OrtValue:
        if target.buffer is not None:
            return target.buffer
        return OrtValue(value, type_proto=self._io.output_meta[self._core.output_names[pos]].type)

    def create_ortvalue_from_shape_and_type(self, shape, element_type, device_type: str,
                                            device_id: int = 0, vendor_id=-1) -> OrtValue:
        return OrtValue.ortvalue_from_shape_and_type(shape, element_type, device_type, device_id, vendor_id)

    def release_captured_graph(self, graph_annotation_id: int = 0) -> None:
        """Free the CUDA graph captured for this gpu_graph_id (a no-op without one)."""
        if self._core.graphs is not None:
            self._core.graphs.release(int(graph_annotation_id))


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
    if value is None:
        return value
    if isinstance(value, np.ndarray):
        # as onnxruntime's run() results, an array that views the buffer the run produced
        # (``result.base`` is that buffer; the memory is the caller's alone either way)
        return value if value.base is not None else value.view()
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


def check_ops_registered(graph, providers) -> None:
    """Refuse, as onnxruntime does, an op no schema defines: InvalidGraph in an onnx domain,
    Fail ("not a registered function/op") in a custom domain that no provider has a kernel for."""
    for node in graph.nodes:
        for sub in node.subgraphs():
            check_ops_registered(sub, providers)
        if schema_for(node.op_type, node.opset, node.domain) is not None:
            continue
        if node.domain == fused_ops.DOMAIN and node.op_type in fused_ops.FUNCTIONS:
            continue  # a fused op: its kernel, or else its function body, runs it
        # onnxruntime's own ai.onnx ops without onnx schema (SimplifiedLayerNormalization) have kernels
        has_kernel = any(p.kernel_for(node.op_type, node.domain, node.opset) is not None for p in providers)
        if node.domain in _onnx_domains() and not has_kernel:
            raise InvalidGraph(f'This is an invalid model. In Node, ("{node.name}", {node.op_type}, '
                               f'"{node.domain}", -1) , Error No Op registered for {node.op_type} with '
                               f"domain_version of {node.opset}")
        if not has_kernel:
            raise Fail(f"Fatal error: {node.domain}:{node.op_type}(-1) is not a registered function/op "
                       f"(node '{node.name}', opset {node.opset} of domain '{node.domain}')")


@functools.lru_cache(maxsize=1)
def _onnx_domains() -> frozenset:
    return frozenset(s.domain for s in onnx.defs.get_all_schemas_with_history()) | {""}


__all__ = ["InferenceSession", "NodeArg", "ModelMetadata", "tensor_to_array"]
