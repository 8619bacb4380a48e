"""SessionOptions, RunOptions and the enums, with onnxruntime's fields, values and defaults."""
from __future__ import annotations

import enum

import numpy as np

from ortgpu.enums import OrtEnum
from ortgpu.errors import InvalidArgument, NotImplemented


class GraphOptimizationLevel(OrtEnum):
    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(OrtEnum):
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(OrtEnum):
    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


def _as_enum(enum_cls, name: str, value):
    """`value` as `enum_cls` (its members, onnxruntime's members or their ints), else TypeError."""
    if isinstance(value, bool) or isinstance(value, (str, float)):
        raise TypeError(f"{name} must be a {enum_cls.__name__}, not {type(value).__name__}")
    try:
        return enum_cls(int(value))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a {enum_cls.__name__}, got {value!r}") from None


def _check_field(owner: str, fields: dict, name: str, value):
    """Validate an assignment to a public option field as onnxruntime's typed bindings do."""
    if name not in fields:
        raise AttributeError(f"'{owner}' object has no attribute '{name}'")
    kind = fields[name]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _as_enum(kind, name, value)
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
        return bool(value)
    if kind is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        return int(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        return value
    return value


_MAX_KEY = 1024


class _Options:
    """Typed public fields (a class-level `_FIELDS` of name -> type) plus string config entries."""

    _FIELDS: dict = {}
    _KIND = "Options"

    def __init__(self):
        object.__setattr__(self, "_config", {})

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        object.__setattr__(self, name, _check_field(type(self).__name__, self._FIELDS, name, value))

    def _add(self, key, value):
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{self._KIND} config entry key and value must be str, got "
                            f"{type(key).__name__} and {type(value).__name__}")
        if not key or len(key) > _MAX_KEY:  # onnxruntime's ConfigOptions limit (values have none)
            raise RuntimeError(f"Config key is empty or longer than maximum length {_MAX_KEY}")
        self._config[key] = value

    def _get(self, key):
        if not isinstance(key, str):
            raise TypeError(f"{self._KIND} config entry key must be str, not {type(key).__name__}")
        try:
            return self._config[key]
        except KeyError:
            raise RuntimeError(f"{self._KIND} does not have configuration with key: {key}") from None


class SessionOptions(_Options):
    """Options for an InferenceSession; same names, types and defaults as onnxruntime."""

    _KIND = "SessionOptions"
    _FIELDS = {
        "graph_optimization_level": GraphOptimizationLevel, "enable_profiling": bool,
        "profile_file_prefix": str, "optimized_model_filepath": str, "execution_mode": ExecutionMode,
        "execution_order": ExecutionOrder, "intra_op_num_threads": int, "inter_op_num_threads": int,
        "enable_mem_pattern": bool, "enable_mem_reuse": bool, "enable_cpu_mem_arena": bool,
        "log_severity_level": int, "log_verbosity_level": int, "logid": str,
        "use_deterministic_compute": bool, "use_per_session_threads": bool,
    }

    def __init__(self):
        super().__init__()
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
        self._free_dims_by_name: dict[str, int] = {}
        self._free_dims_by_denotation: dict[str, int] = {}
        self._initializers: dict = {}
        self._external_initializers = SuppliedExternalData()  # external data given from memory

    def add_session_config_entry(self, key: str, value: str) -> None:
        self._add(key, value)

    def get_session_config_entry(self, key: str) -> str:
        return self._get(key)

    @staticmethod
    def _dim_value(what: str, dim_value) -> int:
        if isinstance(dim_value, (bool, np.bool_)) or not isinstance(dim_value, (int, np.integer)):
            raise TypeError(f"free dimension override for '{what}' must be an int, "
                            f"not {type(dim_value).__name__}")
        if dim_value < 0:
            raise InvalidArgument(f"Free dimension override for '{what}' must be >= 0, got {dim_value}")
        return int(dim_value)

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        self._free_dims_by_name[str(dim_name)] = self._dim_value(dim_name, dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        self._free_dims_by_denotation[str(dim_denotation)] = self._dim_value(dim_denotation, dim_value)

    def add_initializer(self, name: str, value) -> None:
        """Override an initializer by name with an OrtValue (as onnxruntime; a NumPy array is
        accepted too); names the model does not have are ignored, as there."""
        if not isinstance(name, str):
            raise TypeError(f"initializer name must be str, not {type(name).__name__}")
        self._initializers[name] = _initializer_value(f"add_initializer('{name}')", value)

    def add_external_initializers(self, names, values) -> None:
        """Supply the data of initializers the model stores as external data, from memory
        (OrtValues, or NumPy arrays), so that their files are not read: see
        ortgpu.external_initializers for what the session checks."""
        names, values = list(names), list(values)
        if len(names) != len(values):
            raise RuntimeError(f"add_external_initializers: {len(names)} names but {len(values)} values; "
                               f"init_num == names.size() must hold")
        for name, value in zip(names, values):
            if not isinstance(name, str):
                raise TypeError(f"initializer name must be str, not {type(name).__name__}")
            self._external_initializers[name] = _initializer_value(f"add_external_initializers('{name}')", value)

    def add_external_initializers_from_files_in_memory(self, file_names, buffers, lengths) -> None:
        """Supply the contents of external-data files from memory: a tensor whose external
        data names one of `file_names` reads its bytes (offset, length) from the buffer."""
        file_names, buffers, lengths = list(file_names), list(buffers), list(lengths)
        if not len(file_names) == len(buffers) == len(lengths):
            raise RuntimeError(f"add_external_initializers_from_files_in_memory: {len(file_names)} names, "
                               f"{len(buffers)} buffers and {len(lengths)} lengths; they must match")
        for name, buf, length in zip(file_names, buffers, lengths):
            data = bytes(memoryview(buf).cast("B"))
            if not 0 <= int(length) <= len(data):
                raise RuntimeError(f"add_external_initializers_from_files_in_memory('{name}'): length {length} "
                                   f"outside the {len(data)}-byte buffer")
            self._external_initializers.files[str(name)] = data[:int(length)]

    def register_custom_ops_library(self, library_path: str) -> None:
        """onnxruntime loads a native custom-op library here; ortgpu cannot, and says so
        (NotImplemented pointing to ortgpu.CustomOp and @ortgpu.custom_op)."""
        from ortgpu.custom_ops import register_custom_ops_library_refused  # noqa: PLC0415
        register_custom_ops_library_refused(library_path)

    def has_providers(self) -> bool:
        """False: providers are chosen with InferenceSession(providers=...), see add_provider."""
        return False

    # --- onnxruntime's automatic EP selection and EP-context API: not applicable -------------
    def add_provider(self, provider_name: str, provider_options: dict) -> None:
        raise NotImplemented(f"SessionOptions.add_provider('{provider_name}'): {_SELECT_WHY}")

    def add_provider_for_devices(self, ep_devices, provider_options: dict) -> None:
        raise NotImplemented(f"SessionOptions.add_provider_for_devices: {_SELECT_WHY}")

    def set_provider_selection_policy(self, policy) -> None:
        raise NotImplemented(f"SessionOptions.set_provider_selection_policy({policy}): {_SELECT_WHY}")

    def set_provider_selection_policy_delegate(self, delegate) -> None:
        raise NotImplemented(f"SessionOptions.set_provider_selection_policy_delegate: {_SELECT_WHY}")

    def set_ep_context_data_read_func(self, read_func) -> None:
        raise NotImplemented("SessionOptions.set_ep_context_data_read_func: ortgpu reads no EP context "
                             "binaries (see ortgpu.compile_api)")

    def clear_ep_context_data_read_func(self) -> None:
        """Nothing to clear: no read function can be set (set_ep_context_data_read_func)."""

    def set_load_cancellation_flag(self, cancel: bool) -> None:
        """False is accepted; True (cancel a load in progress) is refused: ortgpu loads a model
        in the constructor's thread and has no cancellation point."""
        if cancel:
            raise NotImplemented("SessionOptions.set_load_cancellation_flag(True): ortgpu cannot cancel a model "
                                 "load in progress")


_SELECT_WHY = ("ortgpu chooses providers from InferenceSession(..., providers=[...]) (see "
               "get_available_providers() and get_ep_devices()); it has no automatic EP selection")


class SuppliedExternalData(dict):
    """Initializer name -> value given with add_external_initializers, plus ``files``: file
    name -> bytes given with add_external_initializers_from_files_in_memory."""

    def __init__(self):
        super().__init__()
        self.files: dict[str, bytes] = {}

    def __bool__(self):
        return bool(len(self) or self.files)


def _initializer_value(what: str, value):
    """`value` if it is an OrtValue holding a tensor or a NumPy array, else onnxruntime's error."""
    if isinstance(value, np.ndarray) or (hasattr(value, "is_tensor") and value.is_tensor()):
        return value
    raise RuntimeError(f"{what}: The provided Python object must be an OrtValue (or a numpy array), "
                       f"not {type(value).__name__}")


class RunOptions(_Options):
    """Per-run options; same names and defaults as onnxruntime."""

    _KIND = "RunOptions"
    _FIELDS = {"log_severity_level": int, "log_verbosity_level": int, "logid": str,
               "terminate": bool, "only_execute_path_to_fetches": bool}

    def __init__(self):
        super().__init__()
        self.log_severity_level = -1
        self.log_verbosity_level = 0
        self.logid = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False

    def add_active_adapter(self, adapter) -> None:
        raise NotImplemented("RunOptions.add_active_adapter: LoRA adapters are not implemented in ortgpu "
                             "(see ortgpu.lora)")

    def add_run_config_entry(self, key: str, value: str) -> None:
        """A run config entry.  Any key is accepted, as onnxruntime accepts it; those that
        act in ortgpu (docs/design.md, "Run config entries"): disable_synchronize_execution_providers,
        gpu_graph_id and memory.enable_memory_arena_shrinkage (ortgpu.run_core)."""
        self._add(key, value)

    def get_run_config_entry(self, key: str) -> str:
        return self._get(key)
