"""SessionOptions, RunOptions and the enums, with onnxruntime's fields, values and defaults."""
from __future__ import annotations

import enum

from ortgpu.errors import InvalidArgument


class GraphOptimizationLevel(enum.IntEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99

    def __str__(self):
        return f"GraphOptimizationLevel.{self.name}"


class ExecutionMode(enum.IntEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1

    def __str__(self):
        return f"ExecutionMode.{self.name}"


class ExecutionOrder(enum.IntEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2

    def __str__(self):
        return f"ExecutionOrder.{self.name}"


class _ConfigEntries:
    def _entries(self) -> dict:
        return self.__dict__.setdefault("_config", {})

    def _add(self, key, value):
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("config entry key and value must be str")
        self._entries()[key] = value

    def _get(self, key):
        try:
            return self._entries()[key]
        except KeyError:
            raise RuntimeError(f"SessionOptions does not have configuration with key: {key}") from None


class SessionOptions(_ConfigEntries):
    """Options for an InferenceSession; same names, types and defaults as onnxruntime."""

    def __init__(self):
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.enable_profiling = False
        self.profile_file_prefix = "onnxruntime_profile_"
        self.optimized_model_filepath = ""
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.execution_order = ExecutionOrder.DEFAULT
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.enable_cpu_mem_arena = True
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.use_deterministic_compute = False
        self.use_per_session_threads = True
        self.free_dimension_overrides_by_name: dict[str, int] = {}
        self.free_dimension_overrides_by_denotation: dict[str, int] = {}
        self.initializers: dict = {}

    def __setattr__(self, name, value):
        if name == "graph_optimization_level":
            value = GraphOptimizationLevel(value)
        elif name == "execution_mode":
            value = ExecutionMode(value)
        elif name == "execution_order":
            value = ExecutionOrder(value)
        elif name in ("intra_op_num_threads", "inter_op_num_threads", "log_severity_level",
                      "log_verbosity_level") and not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        object.__setattr__(self, name, value)

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._add(key, value)

    def get_session_config_entry(self, key: str) -> str:
        return self._get(key)

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        if dim_value < 0:
            raise InvalidArgument(f"Free dimension override for '{dim_name}' must be >= 0, got {dim_value}")
        self.free_dimension_overrides_by_name[dim_name] = int(dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        if dim_value < 0:
            raise InvalidArgument(f"Free dimension override for '{dim_denotation}' must be >= 0, got {dim_value}")
        self.free_dimension_overrides_by_denotation[dim_denotation] = int(dim_value)

    def add_initializer(self, name: str, value) -> None:
        """Supply (or override) an initializer by name, as onnxruntime's add_initializer."""
        self.initializers[name] = value

    def has_providers(self) -> bool:
        return False


class RunOptions(_ConfigEntries):
    """Per-run options; same names and defaults as onnxruntime."""

    def __init__(self):
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._add(key, value)

    def get_run_config_entry(self, key: str) -> str:
        return self._get(key)
