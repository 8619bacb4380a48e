"""The parts of onnxruntime's InferenceSession API that are built on the core session:
run_async, run_with_ortvaluevector, the memory infos and EP devices of inputs and outputs,
graph assignment info, tuning results and dynamic EP options.

``InferenceSession`` inherits them from ``SessionExtensions``; they use only the session's
public methods (run, run_with_ort_values, get_inputs, get_outputs, get_providers,
get_provider_assignment, get_session_options), so the core session can change underneath.
"""
from __future__ import annotations

from ortgpu.async_run import run_async as _run_async
from ortgpu.device_info import OrtAllocatorType, OrtMemoryInfo, OrtMemType
from ortgpu.ep_assignment import OrtEpAssignedNode, OrtEpAssignedSubgraph
from ortgpu.ep_devices import OrtHardwareDeviceType, get_ep_devices
from ortgpu.errors import Fail, InvalidArgument
from ortgpu.value_vector import OrtValueVector

_RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"
_MEMORY_NAME = {"CPUExecutionProvider": "Cpu", "CUDAExecutionProvider": "Cuda"}


class SessionExtensions:
    """Mixed into InferenceSession (see the module docstring)."""

    @property
    def _sess(self):
        """onnxruntime's C-level session object (ortgpu.c_session.CSession)."""
        from ortgpu.c_session import CSession  # noqa: PLC0415
        return CSession(self)

    # --- running -------------------------------------------------------------------------
    def run_async(self, output_names, input_feed: dict, callback, user_data, run_options=None) -> None:
        """Run on a worker thread; ``callback(results, user_data, err)`` gets the outputs, or an
        empty list and the error message (ortgpu.async_run)."""
        return _run_async(self, output_names, input_feed, callback, user_data, run_options)

    def run_with_ortvaluevector(self, run_options, feed_names, feeds, fetch_names, fetches, fetch_devices) -> None:
        """onnxruntime's low-overhead run: `feeds` (an OrtValueVector, in `feed_names` order)
        in, the outputs named `fetch_names` appended to the `fetches` OrtValueVector (left on
        the devices the run produced them on; `fetch_devices` is accepted for the signature)."""
        feed_names, fetch_names = list(feed_names), list(fetch_names)
        if len(feed_names) != len(feeds):
            raise RuntimeError(f"run_with_ortvaluevector: {len(feed_names)} feed names but {len(feeds)} feeds")
        if not isinstance(fetches, OrtValueVector):
            raise TypeError(f"run_with_ortvaluevector: fetches must be an OrtValueVector, not {type(fetches).__name__}")
        outputs = self.run_with_ort_values(fetch_names, dict(zip(feed_names, feeds)), run_options)
        for value in outputs:
            fetches.push_back(value)

    # --- onnxruntime's C-level session methods (same class here) -------------------------------
    def initialize_session(self, providers, provider_options, disabled_optimizers=None) -> None:
        """C-level: (re)create the providers, as set_providers."""
        self.set_providers(list(providers) or None, list(provider_options) or None)

    def create_ortvalue_from_shape_and_onnx_type(self, shape, onnx_element_type: int, device) -> "OrtValue":
        """C-level: an uninitialized tensor of ONNX element type on `device` (an OrtDevice)."""
        from ortgpu.values import OrtValue  # noqa: PLC0415
        return OrtValue.ortvalue_from_shape_and_onnx_type(shape, onnx_element_type, device)

    def is_webgpu_graph_capture_enabled(self) -> bool:
        """False: ortgpu has no WebGPU provider."""
        return False

    def webgpu_context_id(self) -> int:
        """-1 (none), as onnxruntime answers for a session without WebGPU: ortgpu has no WebGPU provider."""
        return -1

    # --- where inputs and outputs live -------------------------------------------------------
    def _first_provider(self) -> str:
        return self.get_providers()[0]

    def _memory_info(self) -> OrtMemoryInfo:
        name = _MEMORY_NAME.get(self._first_provider(), "Cpu")
        return OrtMemoryInfo(name, OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, OrtMemType.DEFAULT)

    def get_input_memory_infos(self) -> list[OrtMemoryInfo]:
        """Per input, the memory the session's first provider takes it from."""
        return [self._memory_info() for _ in self.get_inputs()]

    def get_output_memory_infos(self) -> list[OrtMemoryInfo]:
        """Per output, the memory the session's first provider produces it in."""
        return [self._memory_info() for _ in self.get_outputs()]

    def get_input_epdevices(self) -> list:
        """Per input, the OrtEpDevice of the session's first provider (None if none matches)."""
        want = self._first_provider()
        kind = OrtHardwareDeviceType.CPU if want == "CPUExecutionProvider" else OrtHardwareDeviceType.GPU
        device = next((d for d in get_ep_devices() if d.ep_name == want and d.device.type == kind), None)
        return [device for _ in self.get_inputs()]

    # --- placement -----------------------------------------------------------------------
    def get_provider_graph_assignment_info(self) -> list[OrtEpAssignedSubgraph]:
        """One subgraph per node with the provider that runs it; needs the session config
        entry ``session.record_ep_graph_assignment_info`` = "1", as in onnxruntime."""
        try:
            recorded = self.get_session_options().get_session_config_entry(_RECORD_ASSIGNMENT) == "1"
        except RuntimeError:  # the entry is not set
            recorded = False
        if not recorded:
            raise Fail(f"Session configuration entry '{_RECORD_ASSIGNMENT}' must be set to \"1\" to retrieve EP "
                       f"graph assignment information.")
        model = getattr(self, "_model", None)
        domains = {n.name: n.domain for n in model.graph.node} if model is not None else {}
        return [OrtEpAssignedSubgraph._make(provider, [OrtEpAssignedNode._make(domains.get(name, ""), op_type, name)])
                for name, op_type, provider in self.get_provider_assignment()]

    # --- tuning and dynamic options ----------------------------------------------------------
    def get_tuning_results(self) -> list:
        """Tunable-op results per provider: none (ortgpu's kernels have no TunableOp tuning)."""
        return []

    def set_tuning_results(self, results, *, error_on_invalid: bool = False) -> None:
        """Check results as onnxruntime does (the provider must be one of the session's); ortgpu
        has no tunable ops, so valid results change nothing."""
        providers = self.get_providers()
        for entry in results:
            ep = entry.get("ep") if isinstance(entry, dict) else None
            if ep not in providers and error_on_invalid:
                raise RuntimeError(f"Error in execution: Cannot find execution provider {ep}")

    def set_ep_dynamic_options(self, options: dict) -> None:
        """Options the providers read while running: ortgpu's providers take none, so the
        keys and values are checked (str to str) and kept in ``_ep_dynamic_options``."""
        if not isinstance(options, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in options.items()):
            raise InvalidArgument("set_ep_dynamic_options: options must be a dict of str to str")
        self._ep_dynamic_options = {**getattr(self, "_ep_dynamic_options", {}), **options}
