"""Graph capture: record a whole run once on a device, then replay it with one launch per run
(CUDA graphs).

Rules (onnxruntime's, with ortgpu's safeguards):

* ``enable_cuda_graph`` in the provider options turns it on.  The session refuses a model
  it cannot capture when it is created (``check_capturable``): control-flow nodes, any copy
  between the host and the device during the run (as onnxruntime: CPU nodes that need no
  copy, such as shape computations, are fine, their values being fixed by the input
  shapes), nodes on another device, nodes whose output shape depends on the data (they read
  device values on the host), inputs that are not tensors.
* Runs are grouped by the RunOptions config entry ``gpu_graph_id`` (an int, default 0; -1
  runs without graphs).  Per id, the first ``WARMUP_RUNS`` runs are ordinary runs (they load
  kernels, plan cuDNN algorithms, fill memory pools), the next one captures and launches the
  graph, and every later one replays it.
* A captured graph owns fixed buffers: its inputs (each run's inputs are copied into them
  first, from the host or the device) and every array allocated during the capture (from a
  memory pool of its own, alive as long as the graph).  Its outputs are read from the fixed
  output buffers; a replay with other input shapes or types than the capture is refused.
* A capture that still fails at run time (a kernel that does what a capture cannot record
  though declared capturable, a library call that resets the stream) does not fail every
  run: that graph id runs eagerly from then on, after one warning naming the cause.

The decision logic and buffer handling (``GraphRunner``) are device-agnostic and run on the
CPU against a fake capture backend in the tests; the device provider supplies the real one
(``graph_backend()``: ortgpu.providers.cuda.graphs for CUDA).
"""
from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np

from ortgpu.errors import Fail, InvalidArgument
from ortgpu.partition import ANY, HOST, Copy, Partition, partition
from ortgpu.providers.registry import CONTROL_FLOW, DATA_DEPENDENT

_log = logging.getLogger("ortgpu")

GPU_GRAPH_ID = "gpu_graph_id"   # onnxruntime's run config key (kOrtRunOptionsConfigCudaGraphAnnotation)
SKIP = -1                       # a gpu_graph_id that runs without graphs
DEFAULT_ID = 0
WARMUP_RUNS = 2                 # onnxruntime's CUDA EP: regular runs before capture, per graph id

_PREFIX = "This session cannot use the CUDA Graph feature as requested by the user"
_INTEGER = re.compile(r"-?[0-9]+")  # what onnxruntime's strict integer parser accepts


def graph_id_of(run_options) -> int:
    """The run's ``gpu_graph_id``: 0 when unset or empty; InvalidArgument (onnxruntime's
    session text) unless it is decimal digits with an optional '-' (its strict parser)."""
    entry = run_options._config.get(GPU_GRAPH_ID) if run_options is not None else None
    if not entry:
        return DEFAULT_ID
    if not _INTEGER.fullmatch(entry):
        raise InvalidArgument(f"Failed to parse the cuda graph annotation id: {entry}")
    return int(entry)


def check_graph_id_entry(run_options) -> None:
    """The check of onnxruntime's Python layer before run_with_iobinding: ValueError when
    ``gpu_graph_id`` is not an integer to Python's int()."""
    entry = getattr(run_options, "_config", {}).get(GPU_GRAPH_ID)
    if entry:
        try:
            int(entry)
        except ValueError:
            raise ValueError(f"Run option '{GPU_GRAPH_ID}' must be an integer, got {entry!r}.") from None


def capture_partition(graph, providers, provider) -> Partition:
    """The partition a captured run uses: every graph input on `provider`'s device, every
    output left where it is produced; Fail (onnxruntime's messages) when it cannot be captured."""
    devices = [provider.device] * len(graph.inputs)
    part = partition(graph, providers, devices, [ANY] * len(graph.outputs))
    check_capturable(part, provider)
    return part


def check_capturable(part: Partition, provider) -> None:
    """Fail unless every step of `part` can be recorded into one CUDA graph on `provider`:
    each placed kernel's own declaration (``@kernel(..., capturable=...)``) says whether it
    may run inside a capture, and why not (control flow, a data-dependent output shape, a
    host round trip); onnxruntime's message names the node."""
    nodes = [it for it in part.items if not isinstance(it, Copy)]
    refused = [it for it in nodes if not it.kernel.capturable]
    control = [it for it in refused if _because(it) == CONTROL_FLOW or it.subparts]
    if control:
        it = control[0]
        raise Fail(f"{_PREFIX} as the model has control flow nodes which can't be supported by CUDA "
                   f"Graphs. (node '{it.node.name}', {it.node.op_type})")
    for vi in part.graph.inputs:
        tp = part.graph.types.get(vi.name)
        if tp is not None and tp.WhichOneof("value") != "tensor_type":
            raise Fail(f"{_PREFIX} as input '{vi.name}' is not a tensor; CUDA graphs take tensor inputs only.")
    off = [f"{it.op_type} of '{it.value}'" for it in part.items if isinstance(it, Copy)]
    off += [f"{it.node.op_type} '{it.node.name}' on {it.provider.name}" for it in nodes
            if it.provider is not provider and it.provider.device != HOST]
    if off:
        raise Fail(f"{_PREFIX}  as all compute graph nodes have not been partitioned to the CUDA EP. "
                   f"(outside {provider.name}: {', '.join(off[:8])}{' ...' if len(off) > 8 else ''})")
    dependent = [f"{it.node.op_type} '{it.node.name}'" for it in refused if _because(it) == DATA_DEPENDENT]
    if dependent:
        raise Fail(f"{_PREFIX} as the model has nodes whose output shape depends on the input data "
                   f"({', '.join(dependent)}): their kernels read device values on the host during the run.")
    on_device = [it for it in refused if it.provider.device != HOST]   # host kernels round-trip nothing
    if on_device:
        named = ", ".join(f"{it.node.op_type} '{it.node.name}' ({_because(it) or 'declared not capturable'})"
                          for it in on_device[:8])
        raise Fail(f"{_PREFIX} as the model has nodes whose kernels cannot run inside a CUDA graph "
                   f"capture: {named}{' ...' if len(on_device) > 8 else ''}.")
    if any(it.provider.device == HOST for it in nodes):
        _log.warning("This model has shape massaging nodes that will execute on CPU. Use the CUDA Graph "
                     "feature with caution: a captured graph keeps the shapes of the run that captured it.")


def _because(item) -> str:
    return item.kernel.not_capturable_because


@dataclasses.dataclass
class CapturedGraph:
    """One captured run: the launchable graph, its fixed input buffers, its outputs (fixed
    buffers too), the (dtype, shape) of each input it was captured for, and whatever must
    stay alive for the recorded addresses to stay valid (the capture's memory pool)."""
    graph: object
    inputs: list
    outputs: list
    signature: tuple
    keep_alive: object = None


class GraphRunner:
    """Warm-up, capture and replay of one plan (the capture partition's), per gpu_graph_id.

    `backend` does the device work: ``stage(value)`` (a new device buffer holding a copy),
    ``copy_into(dst, src)``, ``capture(fn) -> (graph, result, keep_alive)`` and ``launch(graph)``."""

    def __init__(self, plan, provider, backend=None, warmup_runs: int = WARMUP_RUNS):
        self.plan = plan
        self.provider = provider
        self.backend = backend if backend is not None else provider.graph_backend()
        self.warmup_runs = warmup_runs
        self.run_counts: dict[int, int] = {}
        self.captured: dict[int, CapturedGraph] = {}
        self.eager: dict[int, str] = {}   # graph ids whose capture failed -> why; they run eagerly

    def action(self, graph_id: int) -> str:
        """What a run with `graph_id` does: 'skip', 'eager' (its capture failed), 'warmup',
        'capture' or 'replay'."""
        if graph_id == SKIP:
            return "skip"
        if graph_id in self.eager:
            return "eager"
        if graph_id in self.captured:
            return "replay"
        if self.run_counts.get(graph_id, 0) >= self.warmup_runs:
            return "capture"
        return "warmup"

    def run(self, graph_id: int, inputs: list) -> list:
        """Run the plan for `graph_id` with `inputs` (plan order; host or device arrays, None for
        an omitted optional input); outputs where they are produced.  Call it inside the
        providers' run scope.  After a capture or a replay the outputs are the graph's fixed
        buffers: the next run of the same id overwrites them."""
        action = self.action(graph_id)
        if action == "replay":
            return self._replay(graph_id, inputs)
        device_inputs = [self._to_device(v) for v in inputs]
        if action == "capture":
            return self._capture(graph_id, device_inputs)
        if action == "warmup":
            self.run_counts[graph_id] = self.run_counts.get(graph_id, 0) + 1
        return self.plan.run(device_inputs)

    def release(self, graph_id: int) -> None:
        """Forget the graph of `graph_id` (and its warm-up count); its buffers are freed."""
        self.captured.pop(graph_id, None)
        self.run_counts.pop(graph_id, None)
        self.eager.pop(graph_id, None)

    # --- internals -------------------------------------------------------------------------
    def _to_device(self, value):
        if value is None or _device_name(value) == self.provider.device:
            return value
        if not isinstance(value, np.ndarray):
            from ortgpu.devices import kind_of  # noqa: PLC0415
            value = kind_of(value).to_numpy(value)  # another device: through the host
        return self.provider.copy_from_host(value)

    def _capture(self, graph_id: int, device_inputs: list) -> list:
        fixed = [None if v is None else self.backend.stage(v) for v in device_inputs]
        try:
            graph, outputs, keep_alive = self.backend.capture(lambda: self.plan.run(fixed))
        except Exception as e:  # noqa: BLE001 - any capture failure: run eagerly, say why once
            why = f"{type(e).__name__}: {e}"
            self.eager[graph_id] = why
            _log.warning("CUDA graph capture failed for gpu_graph_id %d (%s); this graph id runs without "
                         "CUDA graphs from now on", graph_id, why)
            return self.plan.run(device_inputs)  # a genuine kernel error raises again here
        self.captured[graph_id] = CapturedGraph(graph, fixed, outputs, _signature(fixed), keep_alive)
        _log.info("captured the CUDA graph for gpu_graph_id %d", graph_id)
        self.backend.launch(graph)  # the capture recorded the work without running it
        return list(outputs)

    def _replay(self, graph_id: int, inputs: list) -> list:
        cap = self.captured[graph_id]
        got = _signature(inputs)
        if got != cap.signature:
            self._refuse(graph_id, cap.signature, got)
        for dst, src in zip(cap.inputs, inputs):
            if dst is not None:
                self.backend.copy_into(dst, src)
        self.backend.launch(cap.graph)
        return list(cap.outputs)

    def _refuse(self, graph_id, want, got):
        names = self.plan.input_names
        for name, w, g in zip(names, want, got):
            if w != g:
                raise InvalidArgument(
                    f"CUDA graph {graph_id} was captured with input '{name}' as {_describe(w)}; this run "
                    f"gives {_describe(g)}. A captured graph replays fixed shapes: use another "
                    f"'{GPU_GRAPH_ID}' (RunOptions config entry) for these shapes, or "
                    f"release_captured_graph({graph_id}) first.")


def _device_name(value) -> str:
    from ortgpu.devices import kind_of  # noqa: PLC0415
    kind = kind_of(value)
    return kind.name if kind is not None else HOST


def _signature(values) -> tuple:
    return tuple(None if v is None else (np.dtype(v.dtype).name, tuple(v.shape)) for v in values)


def _describe(sig) -> str:
    if sig is None:
        return "omitted"
    return f"{sig[0]} of shape {list(sig[1])}"
