"""Which providers exist, which are available here, and normalization of the `providers`
argument as onnxruntime does it (names or (name, options) pairs)."""
from __future__ import annotations

import collections.abc
import warnings

from ortgpu.providers.cpu import CPUExecutionProvider

# Every provider name onnxruntime 1.32 knows, in its order: a name outside this list is an error; a known one
# that this build cannot run warns and falls back to the CPU, as in onnxruntime.
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


class UnknownProviderError(ValueError):
    """A provider name that no onnxruntime build knows: always an error, never a fallback
    (onnxruntime would retry on the CPU; a typo in a provider name should not run silently)."""


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
    for name, opts in pairs:
        if name not in ALL_PROVIDERS:
            raise UnknownProviderError(f"Unknown Provider Type: {name}. Known providers: {', '.join(ALL_PROVIDERS)}")
        if name in seen:
            warnings.warn(f"Duplicate provider '{name}' encountered, ignoring.", stacklevel=3)
            continue
        seen.add(name)
        if name not in available:
            warnings.warn(f"Specified provider '{name}' is not in available provider names."
                          f"Available providers: '{', '.join(available)}'", stacklevel=3)
            continue
        out.append((name, {str(k): str(v) for k, v in opts.items()}))
    if not any(n == "CPUExecutionProvider" for n, _ in out):
        out.append(("CPUExecutionProvider", {}))  # onnxruntime always keeps the CPU as the last resort
    return out


def create(pairs: list[tuple[str, dict]]):
    classes = provider_classes()
    return [classes[name](opts) for name, opts in pairs]
