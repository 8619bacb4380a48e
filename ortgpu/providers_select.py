"""Which providers exist, which are available here, and normalization of the `providers`
argument as onnxruntime does it (names or (name, options) pairs)."""
from __future__ import annotations

import collections.abc
import warnings

from ortgpu.providers.cpu import CPUExecutionProvider

# Every provider name onnxruntime 1.32 knows, in its order.  As in onnxruntime, a name this build cannot run
# warns and is skipped; a name outside this list also fails the provider setup (UnknownProviderError), which
# the session answers with onnxruntime's fallback: a notice on stdout and a retry on the CPU alone
# (an error with enable_fallback=0).
ALL_PROVIDERS = [
    "TensorrtExecutionProvider", "CUDAExecutionProvider",
    "MIGraphXExecutionProvider", "OpenVINOExecutionProvider",
    "DnnlExecutionProvider", "VitisAIExecutionProvider", "QNNExecutionProvider",
    "NnapiExecutionProvider", "VSINPUExecutionProvider", "JsExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider", "RknpuExecutionProvider", "WebNNExecutionProvider",
    "WebGpuExecutionProvider", "XnnpackExecutionProvider", "CANNExecutionProvider",
    "AzureExecutionProvider", "CPUExecutionProvider",
]


class UnknownProviderError(RuntimeError):
    """A provider name that no onnxruntime build knows (onnxruntime's C layer raises a
    RuntimeError 'Unknown Provider Type: <name>', which its session answers with a CPU fallback)."""


def report_fallback(error: Exception, providers, fallback_providers) -> None:
    """Print onnxruntime's notice for a provider setup that failed and is retried (on stdout,
    as onnxruntime's InferenceSession prints it)."""
    print("*************** EP Error ***************")
    print(f"EP Error {error} when using {providers}")
    print(f"Falling back to {fallback_providers} and retrying.")
    print("****************************************")


def provider_classes() -> dict[str, type]:
    """Provider classes this build can run, by name, in priority order."""
    classes: dict[str, type] = {}
    try:
        from ortgpu.providers.cuda import CUDAExecutionProvider, cuda_available  # noqa: PLC0415
        if cuda_available():
            classes["CUDAExecutionProvider"] = CUDAExecutionProvider
    except ImportError:
        pass
    classes["CPUExecutionProvider"] = CPUExecutionProvider
    return classes


def get_available_providers() -> list[str]:
    return list(provider_classes())


def get_all_providers() -> list[str]:
    return list(ALL_PROVIDERS)


def get_device() -> str:
    return "GPU" if "CUDAExecutionProvider" in provider_classes() else "CPU"


def check_and_normalize_provider_args(providers, provider_options, available_provider_names):
    """onnxruntime's argument check: (names, option dicts with str keys and values) from the
    accepted forms (names, (name, options) pairs, or names with a parallel provider_options
    list); ValueError for malformed arguments; a warning (the name is kept) for a name not in
    `available_provider_names`, and a warning (the repeat is dropped) for a duplicate."""
    if providers is None:
        return [], []
    chosen: dict[str, dict] = {}

    def take(name, options):
        if name not in available_provider_names:
            warnings.warn(f"Specified provider '{name}' is not in available provider names."
                          f"Available providers: '{', '.join(available_provider_names)}'", stacklevel=4)
        if name in chosen:
            warnings.warn(f"Duplicate provider '{name}' encountered, ignoring.", stacklevel=4)
            return
        chosen[name] = {str(k): str(v) for k, v in options.items()}

    if isinstance(providers, str) or not isinstance(providers, collections.abc.Sequence):
        raise ValueError("'providers' should be a sequence.")
    if provider_options is not None:
        if not isinstance(provider_options, collections.abc.Sequence):
            raise ValueError("'provider_options' should be a sequence.")
        if len(providers) != len(provider_options):
            raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
        if not all(isinstance(p, str) for p in providers):
            raise ValueError("Only string values for 'providers' are supported if 'provider_options' is given.")
        if not all(isinstance(o, dict) for o in provider_options):
            raise ValueError("'provider_options' values must be dicts.")
        for name, opts in zip(providers, provider_options):
            take(name, opts)
    else:
        for p in providers:
            if isinstance(p, str):
                take(p, {})
            elif isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], dict):
                take(p[0], p[1])
            else:
                raise ValueError("'providers' values must be either strings or (string, dict) tuples.")
    return list(chosen), list(chosen.values())


def normalize(providers, provider_options) -> list[tuple[str, dict]]:
    """[(name, options)] this build runs, from onnxruntime's accepted forms: the names it cannot
    run are dropped after check_and_normalize_provider_args' warning, an unknown name raises
    UnknownProviderError, and the CPU is always last."""
    available = provider_classes()
    if providers is None:
        return [(n, {}) for n in available]
    names, options = check_and_normalize_provider_args(providers, provider_options, list(available))
    unknown = [n for n in names if n not in ALL_PROVIDERS]
    if unknown:  # onnxruntime checks names in C++ after its Python checks
        raise UnknownProviderError(f"Unknown Provider Type: {unknown[0]}")
    out = [(n, o) for n, o in zip(names, options) if n in available]
    if not any(n == "CPUExecutionProvider" for n, _ in out):
        out.append(("CPUExecutionProvider", {}))  # onnxruntime always keeps the CPU as the last resort
    return out


def apply_env_allocators(pairs: list[tuple[str, dict]], sess_options) -> list[tuple[str, dict]]:
    """With the session config entry ``session.use_env_allocators`` = "1", a CUDA provider
    takes the arena limits of the allocator registered for its device
    (create_and_register_allocator_v2, ortgpu.allocators.arena_options); options the caller
    gave the provider explicitly win."""
    try:
        use = sess_options is not None and sess_options.get_session_config_entry("session.use_env_allocators") == "1"
    except RuntimeError:  # the entry is not set
        use = False
    if not use:
        return pairs
    from ortgpu.allocators import arena_options  # noqa: PLC0415
    out = []
    for name, opts in pairs:
        if name == "CUDAExecutionProvider":
            opts = {**arena_options(int(opts.get("device_id", 0))), **opts}
        out.append((name, opts))
    return out


def create(pairs: list[tuple[str, dict]]):
    classes = provider_classes()
    return [classes[name](opts) for name, opts in pairs]
