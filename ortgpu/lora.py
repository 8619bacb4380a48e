"""LoRA adapters (onnxruntime's LoraAdapter and its .onnx_adapter file format, AdapterFormat).

Not implemented in ortgpu: onnxruntime applies an adapter by overriding named initializers per
run (RunOptions.add_active_adapter), which ortgpu's sessions do not support yet.  A program
can get the same effect by merging the adapter's weights into the model before loading it, or
by feeding them as overridable initializers of the run.
"""
from __future__ import annotations

from ortgpu.errors import NotImplemented

_WHY = ("LoRA adapters are not implemented in ortgpu (no per-run initializer override through "
        "RunOptions.add_active_adapter); merge the adapter weights into the model, or pass them "
        "as overridable initializers in the input feed")


class AdapterFormat:
    """onnxruntime's adapter file reader/writer (refused)."""

    def __init__(self, *args, **kwargs):
        raise NotImplemented(f"AdapterFormat: {_WHY}")

    @staticmethod
    def read_adapter(file_path: str):
        raise NotImplemented(f"AdapterFormat.read_adapter('{file_path}'): {_WHY}")


class LoraAdapter:
    """A loaded adapter (refused)."""

    def __init__(self, *args, **kwargs):
        raise NotImplemented(f"LoraAdapter: {_WHY}")

    def Load(self, adapter_file_path: str) -> None:  # noqa: N802 - onnxruntime's name
        raise NotImplemented(f"LoraAdapter.Load('{adapter_file_path}'): {_WHY}")
