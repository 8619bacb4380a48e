"""CUDAExecutionProvider options: onnxruntime's names, defaults, value syntax and errors.

onnxruntime (1.20 and later) parses the CUDA options with a table of parsers, one per key:
an unknown key or a value a parser refuses raises ``RuntimeError`` whose text ends in
``[ONNXRuntimeError] : 1 : FAIL : Unknown provider option: "<key>".`` or
``... : Failed to parse provider option "<key>": <reason>``.  The value syntax is that
of its ``ParseStringWithClassicLocale``:

* booleans: exactly ``0``, ``1``, ``false``, ``true``, ``False``, ``True``;
* signed integers: decimal digits with an optional ``-`` (no ``+``, no spaces);
* unsigned integers (sizes, addresses): decimal, or hexadecimal after ``0x``/``0X``;
* enums: the exact names (``kNextPowerOfTwo``, ``EXHAUSTIVE``, ...), never their numbers.

``get_provider_options()`` returns every key as a string: booleans as ``"0"``/``"1"``,
numbers in decimal, enums by name, and ``has_user_compute_stream`` recomputed from
whether ``user_compute_stream`` is set, as onnxruntime does.

Nothing here needs CuPy: parsing is checked on the CPU; the provider passes the device
count in when it knows it (``device_id`` must be below it).
"""
from __future__ import annotations

import dataclasses
import re

from ortgpu.errors import Fail

SIZE_MAX = 2 ** 64 - 1  # onnxruntime's "no limit" for gpu_mem_limit (size_t max)


class ProviderOptionError(Fail, RuntimeError):
    """A bad CUDA provider option.  onnxruntime raises ``RuntimeError`` here (its Python
    session falls back to the CPU on it when fallback is enabled); this is one, and also
    an ortgpu ``Fail`` with onnxruntime's ``[ONNXRuntimeError] : 1 : FAIL : ...`` text."""


class _Refused(ValueError):
    """A value parser's refusal; becomes 'Failed to parse provider option ...'."""


_SIGNED = re.compile(r"-?[0-9]+\Z")
_UNSIGNED_DEC = re.compile(r"[0-9]+\Z")
_UNSIGNED_HEX = re.compile(r"0[xX]([0-9a-fA-F]+)\Z")


def parse_bool(text: str) -> bool:
    if text in ("1", "true", "True"):
        return True
    if text in ("0", "false", "False"):
        return False
    raise _Refused(f'Failed to parse value: "{text}"')


def parse_signed(text: str, bits: int) -> int:
    if not _SIGNED.match(text):
        raise _Refused(f'Failed to parse value: "{text}"')
    value = int(text)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise _Refused(f'Failed to parse value: "{text}"')
    return value


def parse_unsigned(text: str, bits: int = 64) -> int:
    m = _UNSIGNED_HEX.match(text)
    if m:
        value = int(m.group(1), 16)
    elif _UNSIGNED_DEC.match(text):
        value = int(text)
    else:
        raise _Refused(f'Failed to parse value: "{text}"')
    if value >= 2 ** bits:
        raise _Refused(f'Failed to parse value: "{text}"')
    return value


def _enum(names: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in names:
            raise _Refused(f"Failed to map enum name to value: {text}")
        return text
    return parse


ARENA_EXTEND_STRATEGIES = ("kNextPowerOfTwo", "kSameAsRequested")
CUDNN_CONV_ALGO_SEARCHES = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


@dataclasses.dataclass(frozen=True)
class CUDAProviderConfig:
    """Parsed CUDA provider options; field names are onnxruntime's keys."""

    device_id: int = 0
    has_user_compute_stream: bool = False
    user_compute_stream: int = 0          # a cudaStream_t address; 0 = the provider makes its own
    gpu_mem_limit: int = SIZE_MAX         # bytes the arena may hold (memory issue)
    gpu_external_alloc: int = 0           # addresses of an external allocator (accepted, not used yet)
    gpu_external_free: int = 0
    gpu_external_empty_cache: int = 0
    arena_extend_strategy: str = "kNextPowerOfTwo"
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    do_copy_in_default_stream: bool = True
    cudnn_conv_use_max_workspace: bool = True
    enable_cuda_graph: bool = False
    cudnn_conv1d_pad_to_nc1d: bool = False
    tunable_op_enable: bool = False
    tunable_op_tuning_enable: bool = False
    tunable_op_max_tuning_duration_ms: int = 0
    enable_skip_layer_norm_strict_mode: bool = False
    prefer_nhwc: bool = False
    use_ep_level_unified_stream: bool = False
    use_tf32: bool = True                 # onnxruntime's default: TF32 on for float32 GEMM and Conv
    sdpa_kernel: int = 0                  # attention backend bit mask (0 = let the runtime choose)
    fuse_conv_bias: bool = False

    def as_strings(self) -> dict[str, str]:
        """Every option as onnxruntime's ``get_provider_options()`` spells it."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "has_user_compute_stream":
                v = self.user_compute_stream != 0
            out[f.name] = ("1" if v else "0") if isinstance(v, bool) else str(v)
        return out


# key -> value parser, in onnxruntime's order
_PARSERS = {
    "device_id": lambda s: parse_signed(s, 16),   # OrtDevice::DeviceId is int16
    "has_user_compute_stream": parse_bool,
    "user_compute_stream": parse_unsigned,
    "gpu_mem_limit": parse_unsigned,
    "gpu_external_alloc": parse_unsigned,
    "gpu_external_free": parse_unsigned,
    "gpu_external_empty_cache": parse_unsigned,
    "arena_extend_strategy": _enum(ARENA_EXTEND_STRATEGIES),
    "cudnn_conv_algo_search": _enum(CUDNN_CONV_ALGO_SEARCHES),
    "do_copy_in_default_stream": parse_bool,
    "cudnn_conv_use_max_workspace": parse_bool,
    "enable_cuda_graph": parse_bool,
    "cudnn_conv1d_pad_to_nc1d": parse_bool,
    "tunable_op_enable": parse_bool,
    "tunable_op_tuning_enable": parse_bool,
    "tunable_op_max_tuning_duration_ms": lambda s: parse_signed(s, 32),
    "enable_skip_layer_norm_strict_mode": parse_bool,
    "prefer_nhwc": parse_bool,
    "use_ep_level_unified_stream": parse_bool,
    "use_tf32": parse_bool,
    "sdpa_kernel": lambda s: parse_signed(s, 32),
    "fuse_conv_bias": parse_bool,
}
assert list(_PARSERS) == [f.name for f in dataclasses.fields(CUDAProviderConfig)]

OPTION_NAMES = tuple(_PARSERS)


def _as_text(value) -> str:
    """onnxruntime's Python layer passes str(value); do the same for direct callers."""
    return value if isinstance(value, str) else str(value)


def parse_cuda_options(options: dict | None, device_count: int | None = None) -> CUDAProviderConfig:
    """Validated options, or ProviderOptionError as onnxruntime words it.

    ``device_count``: the number of CUDA devices when known; ``device_id`` must then lie in
    ``[0, device_count)``.  ``None`` (no CuPy, CPU tests) skips that check only."""
    values = {}
    for key, raw in (options or {}).items():
        key = str(key)
        parser = _PARSERS.get(key)
        if parser is None:
            raise ProviderOptionError(f'Unknown provider option: "{key}".')
        try:
            values[key] = parser(_as_text(raw))
        except _Refused as e:
            raise ProviderOptionError(f'Failed to parse provider option "{key}": {e}') from None
        if key == "device_id" and device_count is not None and not 0 <= values[key] < device_count:
            raise ProviderOptionError(
                f'Failed to parse provider option "device_id": Invalid device ID: {values[key]}, '
                f"must be between 0 (inclusive) and {device_count} (exclusive).")
    config = CUDAProviderConfig(**values)
    # onnxruntime derives the flag from the pointer, whatever was passed for it
    return dataclasses.replace(config, has_user_compute_stream=config.user_compute_stream != 0)


def default_option_strings() -> dict[str, str]:
    return CUDAProviderConfig().as_strings()


_DEFAULT_CONFIG = CUDAProviderConfig()


def config_of(ctx) -> CUDAProviderConfig:
    """The options of the CUDA provider running a kernel (``ctx.ep``); the defaults for a
    context without one (a kernel called directly, as the tests do)."""
    config = getattr(getattr(ctx, "ep", None), "config", None)
    return config if isinstance(config, CUDAProviderConfig) else _DEFAULT_CONFIG
