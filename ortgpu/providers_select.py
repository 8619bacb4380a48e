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


def normalize(providers, provider_options) -> list[tuple[str, dict]]:
    """[(name, options)] from onnxruntime's accepted forms; unknown names raise ValueError."""
    available = provider_classes()
    if providers is None:
        return [(n, {}) for n in available]
    if isinstance(providers, str) or not isinstance(providers, collections.abc.Sequence):
        raise ValueError("'providers' should be a sequence.")
    pairs: list[tuple[str, dict]] = []
    if provider_options is not None:
        if not isinstance(provider_options, collections.abc.Sequence):
            raise ValueError("'provider_options' should be a sequence.")
        if len(providers) != len(provider_options):
            raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
        if not all(isinstance(p, str) for p in providers):
            raise ValueError("Only string values for 'providers' are supported if 'provider_options' is given.")
        if not all(isinstance(o, dict) for o in provider_options):
            raise ValueError("'provider_options' values must be dicts.")
        pairs = list(zip(providers, provider_options))
    else:
        for p in providers:
            if isinstance(p, str):
                pairs.append((p, {}))
            elif isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], dict):
                pairs.append(p)
            else:
                raise ValueError("'providers' values must be either strings or (string, dict) tuples.")
    out: list[tuple[str, dict]] = []
    seen = set()
    unknown = [name for name, _ in pairs if name not in ALL_PROVIDERS]
    for name, opts in pairs:
        if name in seen:
            warnings.warn(f"Duplicate provider '{name}' encountered, ignoring.", stacklevel=3)
            continue
        seen.add(name)
        if name not in available:
            warnings.warn(f"Specified provider '{name}' is not in available provider names."
                          f"Available providers: '{', '.join(available)}'", stacklevel=3)
            continue
        out.append((name, {str(k): str(v) for k, v in opts.items()}))
    if unknown:  # after the warnings, as onnxruntime checks names in C++ after its Python checks
        raise UnknownProviderError(f"Unknown Provider Type: {unknown[0]}")
    if not any(n == "CPUExecutionProvider" for n, _ in out):
        out.append(("CPUExecutionProvider", {}))  # onnxruntime always keeps the CPU as the last resort
    return out


def create(pairs: list[tuple[str, dict]]):
    classes = provider_classes()
    return [classes[name](opts) for name, opts in pairs]
