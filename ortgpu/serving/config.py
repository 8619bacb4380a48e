"""``config.pbtxt`` read with the model-config protobuf that ships in ``tritonclient``, reduced
to the settings ortgpu uses (:class:`ServingConfig`).

Fields honoured: ``max_batch_size``; ``dynamic_batching { max_queue_delay_microseconds,
preferred_batch_size, default_queue_policy { max_queue_size } }``; ``instance_group { count,
kind }``; ``version_policy``; ``default_model_filename``; ``input``/``output`` (checked against
the model); and ortgpu's session settings in ``parameters`` (``key: "providers" value {
string_value: "CUDAExecutionProvider,CPUExecutionProvider" }``): ``providers``,
``graph_optimization_level``, ``precision`` (fp16/bf16), ``enable_cuda_graph``,
``intra_op_num_threads``. Unknown parameters are refused, naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ModelLoadError
from .repository import DEFAULT_MODEL_FILENAME

PARAMETERS = ("providers", "graph_optimization_level", "precision", "enable_cuda_graph",
              "intra_op_num_threads")
GPU_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
CPU_PROVIDERS = ("CPUExecutionProvider",)


@dataclass
class TensorSpec:
    """An input or output declared in config.pbtxt (dims without the batch dimension)."""
    name: str
    datatype: str  # protocol name: FP32, INT64, ...
    dims: tuple[int, ...]


@dataclass
class ServingConfig:
    """What ortgpu takes from a model's config (or the defaults when there is none)."""
    max_batch_size: int = 0                 # 0: no batch dimension added, no batching
    dynamic_batching: bool = False
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 0                 # 0: the server's default bound
    instance_count: int = 1
    instance_kind: str = "KIND_AUTO"        # KIND_GPU, KIND_CPU or KIND_AUTO
    version_policy: str = "latest"
    num_versions: int = 1
    specific_versions: tuple[int, ...] = ()
    model_filename: str = DEFAULT_MODEL_FILENAME
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    parameters: dict[str, str] = field(default_factory=dict)

    def providers(self) -> list[str] | None:
        """Providers for the sessions: the ``providers`` parameter, else from the instance kind
        (KIND_GPU: CUDA then CPU, KIND_CPU: CPU), else None (ortgpu's default)."""
        if "providers" in self.parameters:
            return [p.strip() for p in self.parameters["providers"].split(",") if p.strip()]
        if self.instance_kind == "KIND_GPU":
            return list(GPU_PROVIDERS)
        if self.instance_kind == "KIND_CPU":
            return list(CPU_PROVIDERS)
        return None


_PB = None


def _triton_pb():
    """tritonclient's ``model_config_pb2``, loaded from its file: importing the
    ``tritonclient.grpc`` package would also register Triton's gRPC service messages, whose
    names (``inference.ServerLiveRequest``, ...) KServe's own protocol module registers too,
    and protobuf refuses a symbol twice in one process."""
    global _PB
    if _PB is None:
        import importlib.util
        import os
        import sys
        name = "tritonclient.grpc.model_config_pb2"
        if name in sys.modules:
            _PB = sys.modules[name]
        else:
            spec = importlib.util.find_spec("tritonclient")
            if spec is None or not spec.submodule_search_locations:
                raise ModelLoadError("reading config.pbtxt needs tritonclient: pip install -e '.[serve]'")
            path = os.path.join(list(spec.submodule_search_locations)[0], "grpc", "model_config_pb2.py")
            module_spec = importlib.util.spec_from_file_location("ortgpu_triton_model_config_pb2", path)
            _PB = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(_PB)
    return _PB


def parse_config(text: str, where: str = "config.pbtxt") -> ServingConfig:
    """Parse config.pbtxt text; a syntax error or unsupported setting raises ModelLoadError
    naming `where` and the field."""
    from google.protobuf import text_format  # noqa: PLC0415 - comes with tritonclient
    pb = _triton_pb()
    proto = pb.ModelConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise ModelLoadError(f"{where}: {e}") from None
    return _from_proto(proto, pb, where)


def _from_proto(proto, pb, where: str) -> ServingConfig:
    cfg = ServingConfig(max_batch_size=proto.max_batch_size)
    if cfg.max_batch_size < 0:
        raise ModelLoadError(f"{where}: max_batch_size must be >= 0, got {cfg.max_batch_size}")
    if proto.HasField("dynamic_batching"):
        db = proto.dynamic_batching
        cfg.dynamic_batching = True
        cfg.max_queue_delay_us = db.max_queue_delay_microseconds
        cfg.preferred_batch_sizes = tuple(sorted(db.preferred_batch_size))
        cfg.max_queue_size = db.default_queue_policy.max_queue_size
        if cfg.max_batch_size == 0:
            raise ModelLoadError(f"{where}: dynamic_batching needs max_batch_size > 0")
        too_big = [b for b in cfg.preferred_batch_sizes if b > cfg.max_batch_size or b < 1]
        if too_big:
            raise ModelLoadError(f"{where}: preferred_batch_size {too_big} outside 1..max_batch_size "
                                 f"({cfg.max_batch_size})")
    _read_instances(proto, pb, cfg, where)
    _read_version_policy(proto, cfg)
    if proto.default_model_filename:
        cfg.model_filename = proto.default_model_filename
    cfg.inputs = [_tensor_spec(t, pb, where) for t in proto.input]
    cfg.outputs = [_tensor_spec(t, pb, where) for t in proto.output]
    cfg.parameters = {k: v.string_value for k, v in proto.parameters.items()}
    unknown = sorted(set(cfg.parameters) - set(PARAMETERS))
    if unknown:
        raise ModelLoadError(f"{where}: unknown parameters {unknown}; ortgpu reads {list(PARAMETERS)}")
    return cfg


def _read_instances(proto, pb, cfg: ServingConfig, where: str) -> None:
    if not proto.instance_group:
        return
    kinds = {pb.ModelInstanceGroup.Kind.Name(g.kind) for g in proto.instance_group}
    if len(kinds) > 1:
        raise ModelLoadError(f"{where}: instance groups of several kinds {sorted(kinds)} are not supported")
    kind = kinds.pop()
    if kind == "KIND_MODEL":
        raise ModelLoadError(f"{where}: instance_group kind KIND_MODEL is not supported (KIND_GPU, KIND_CPU)")
    cfg.instance_kind = kind
    cfg.instance_count = sum(max(1, g.count) for g in proto.instance_group)


def _read_version_policy(proto, cfg: ServingConfig) -> None:
    if not proto.HasField("version_policy"):
        return
    which = proto.version_policy.WhichOneof("policy_choice")
    cfg.version_policy = which
    if which == "latest":
        cfg.num_versions = max(1, proto.version_policy.latest.num_versions)
    elif which == "specific":
        cfg.specific_versions = tuple(proto.version_policy.specific.versions)


def _tensor_spec(t, pb, where: str) -> TensorSpec:
    name = pb.DataType.Name(t.data_type)
    if name == "TYPE_INVALID":
        raise ModelLoadError(f"{where}: tensor {t.name!r} has no data_type")
    datatype = {"TYPE_STRING": "BYTES"}.get(name, name[len("TYPE_"):])
    dims = tuple(int(d) for d in t.reshape.shape) if t.HasField("reshape") else tuple(int(d) for d in t.dims)
    return TensorSpec(t.name, datatype, dims)


def session_settings(cfg: ServingConfig, session_options_cls):
    """(providers, SessionOptions, provider_options) for one instance, from the config's parameters.
    `session_options_cls` is the backend's SessionOptions (ortgpu's or onnxruntime's: same API)."""
    so = session_options_cls()
    level = cfg.parameters.get("graph_optimization_level")
    if level:
        so.graph_optimization_level = _optimization_level(level, so)
    threads = cfg.parameters.get("intra_op_num_threads")
    if threads:
        try:
            so.intra_op_num_threads = int(threads)
        except ValueError:
            raise ModelLoadError(f"parameter intra_op_num_threads: expected an integer, got {threads!r}") from None
    precision = cfg.parameters.get("precision")
    if precision:
        if precision not in ("fp32", "fp16", "bf16"):
            raise ModelLoadError(f"parameter precision: expected fp32, fp16 or bf16, got {precision!r}")
        if precision != "fp32":
            so.add_session_config_entry("ortgpu.precision", precision)
    providers = cfg.providers()
    cuda_graph = cfg.parameters.get("enable_cuda_graph", "").lower()
    if cuda_graph not in ("", "0", "1", "true", "false"):
        raise ModelLoadError(f"parameter enable_cuda_graph: expected true or false, got {cuda_graph!r}")
    provider_options = None
    if cuda_graph in ("1", "true") and providers:
        provider_options = [{"enable_cuda_graph": "1"} if p == "CUDAExecutionProvider" else {} for p in providers]
    return providers, so, provider_options


def _optimization_level(text: str, so):
    levels = type(so.graph_optimization_level)
    names = {"disable_all": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
             "all": "ORT_ENABLE_ALL"}
    key = names.get(text.lower(), text.upper())
    if not hasattr(levels, key):
        raise ModelLoadError(f"parameter graph_optimization_level: expected one of {sorted(names.values())}, "
                             f"got {text!r}")
    return getattr(levels, key)
