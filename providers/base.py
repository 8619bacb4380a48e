"""The execution-provider interface: what the partitioner and executor ask of a provider."""
from __future__ import annotations

from ortgpu.providers.registry import SHARED, KernelDef, lookup


class ExecutionProvider:
    """A place where kernels run: its array module, device, options, and which nodes it takes."""

    name = "ExecutionProvider"
    device = "cpu"          # where its arrays live: "cpu" or "cuda"
    kernel_sources: tuple[str, ...] = (SHARED,)
    option_defaults: dict[str, str] = {}
    # NumPy dtype names (np.dtype(...).name) this provider's arrays cannot hold; the partitioner
    # sends nodes that read or write such tensors to a later provider.
    declined_dtypes: frozenset[str] = frozenset()

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

    # Kernels of one session's own custom ops (ortgpu.custom_ops.attach), keyed like the
    # registry and consulted before it; empty for a provider no session has given any.
    session_kernels: dict = {}

    def kernel_for(self, op_type: str, domain: str, opset: int) -> KernelDef | None:
        return lookup(op_type, domain, opset, self.kernel_sources, self.session_kernels)

    def accepts(self, node, kernel: KernelDef, input_types, output_types=()) -> bool:
        """Whether this provider runs `node` with `kernel`: the element types the kernel
        declares (KernelDef.takes; onnx TypeProtos, None where unknown).  Device providers
        add what their arrays can hold."""
        return kernel.takes(input_types, output_types or ())

    def prefers_nhwc(self, node, dtype) -> bool:
        """Whether this provider runs `node` (a 2-D Conv whose data has NumPy dtype name
        `dtype`) faster channels-last, as ``ortgpu::NhwcConv``: the layout pass asks."""
        return False

    def holds(self, tp) -> bool:
        """Whether a value of onnx TypeProto `tp` can live on this provider's device (sequences,
        optionals and maps by their elements); an unknown type is assumed to fit."""
        if tp is None:
            return True
        kind = tp.WhichOneof("value")
        if kind == "tensor_type" or kind == "sparse_tensor_type":
            code = getattr(tp, kind).elem_type
            if not code or not self.declined_dtypes:
                return True
            from ortgpu.dtypes import np_dtype
            try:
                return np_dtype(code).name not in self.declined_dtypes
            except TypeError:
                return False
        if kind == "sequence_type":
            return self.holds(tp.sequence_type.elem_type)
        if kind == "optional_type":
            return self.holds(tp.optional_type.elem_type)
        if kind == "map_type":
            return self.device == "cpu"  # maps (ZipMap) are Python dicts on the host
        return True

    def to_host(self, value):
        """One tensor of this provider's device as a NumPy array (the identity on the host)."""
        return value

    def from_host(self, value):
        """One NumPy array as a tensor of this provider's device (the identity on the host)."""
        return value

    def copy_to_host(self, value):
        """`value` (a tensor, a sequence of tensors as a list, an optional as None) on the host."""
        return _map_tensors(value, self.to_host)

    def copy_from_host(self, value):
        """A host value (a tensor, a list of tensors, None) on this provider's device."""
        return _map_tensors(value, self.from_host)


def _map_tensors(value, fn):
    if value is None:
        return None
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    if isinstance(value, dict):  # a map value stays a dict of host scalars
        return value
    return fn(value)


def host_array(value):
    """A small tensor of any device as a NumPy array, explicitly (``.get()`` for a device
    array: CuPy and the test double refuse ``np.asarray``); for host-side attribute math."""
    import numpy as np
    if isinstance(value, np.ndarray):
        return value
    get = getattr(value, "get", None)
    if get is not None and not isinstance(value, (dict, list)):
        return get()
    return np.asarray(value)
