"""The execution-provider interface: what the partitioner and executor ask of a provider."""
from __future__ import annotations

from ortgpu.providers.registry import SHARED, KernelDef, lookup


class ExecutionProvider:
    """A place where kernels run: its array module, device, options, and which nodes it takes."""

    name = "ExecutionProvider"
    device = "cpu"          # where its arrays live: "cpu" or "cuda"
    kernel_sources: tuple[str, ...] = (SHARED,)
    option_defaults: dict[str, str] = {}

    def __init__(self, options: dict | None = None):
        self.options = self.parse_options(dict(options or {}))

    @property
    def xp(self):
        raise NotImplementedError

    def parse_options(self, options: dict) -> dict:
        """Validated options; an unknown key is an error (as in onnxruntime)."""
        from ortgpu.errors import InvalidArgument
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            raise InvalidArgument(f"[{self.name}] Unknown provider option(s): {unknown}. "
                                  f"Known: {sorted(self.option_defaults)}")
        merged = dict(self.option_defaults)
        merged.update({k: str(v) for k, v in options.items()})
        return merged

    def get_options(self) -> dict[str, str]:
        return dict(self.options)

    def kernel_for(self, op_type: str, domain: str, opset: int) -> KernelDef | None:
        return lookup(op_type, domain, opset, self.kernel_sources)

    def accepts(self, node, kernel: KernelDef, input_types) -> bool:
        """Capability check beyond the registry: element types the kernel declares."""
        if kernel.types is None:
            return True
        from ortgpu.dtypes import np_dtype
        for tp in input_types:
            if tp is not None and tp.WhichOneof("value") == "tensor_type" and tp.tensor_type.elem_type:
                if np_dtype(tp.tensor_type.elem_type).name not in kernel.types:
                    return False
        return True

    def to_host(self, value):
        return value

    def from_host(self, value):
        return value
