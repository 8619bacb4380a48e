"""OrtValueVector (a list of OrtValues, onnxruntime's C-level run result type) and
copy_tensors (device-to-device copies between existing OrtValues)."""
from __future__ import annotations

from collections.abc import Sequence

from ortgpu.devices import device_kind
from ortgpu.values import OrtValue


class OrtValueVector:
    """An ordered list of OrtValues with onnxruntime's C-level methods."""

    def __init__(self, values=()):
        self._values: list[OrtValue] = []
        for v in values:
            self.push_back(v)

    def push_back(self, value, is_bool_tensor: bool = False) -> None:
        """Append an OrtValue, or a DLPack capsule / producer (shared, not copied);
        `is_bool_tensor` reads a uint8 DLPack tensor as bool, as onnxruntime's overload does."""
        if not isinstance(value, OrtValue):
            value = OrtValue.from_dlpack(value)
            if is_bool_tensor and value._value.dtype.itemsize == 1 and value._value.dtype.kind == "u":
                value = OrtValue(value._value.view("bool"), value)
        self._values.append(value)

    def push_back_batch(self, tensors, data_ptrs, element_types, shapes, devices) -> None:
        """Append OrtValues over torch tensors' memory (one per tensor), as onnxruntime's
        training API does: here through DLPack, which carries pointer, type, shape and device."""
        if not (len(tensors) == len(data_ptrs) == len(element_types) == len(shapes) == len(devices)):
            raise RuntimeError("push_back_batch: the five argument lists must have the same length")
        for t in tensors:
            self.push_back(t)

    def reserve(self, n: int) -> None:
        """Capacity hint; a Python list needs none."""

    def shrink_to_fit(self) -> None:
        """Capacity hint; a Python list needs none."""

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i: int) -> OrtValue:
        if not -len(self._values) <= i < len(self._values):
            raise IndexError(f"OrtValueVector index {i} out of range (size {len(self._values)})")
        return self._values[i]

    def __iter__(self):
        return iter(list(self._values))

    def element_type_at(self, idx: int) -> int:
        """The ONNX element type (TensorProto code) of the tensor at `idx`."""
        return self[idx].element_type()

    def dlpack_at(self, idx: int):
        """A DLPack capsule over the tensor at `idx` (no copy)."""
        return self[idx].__dlpack__()

    def to_dlpacks(self, to_tensor) -> list:
        """Every tensor through DLPack: ``[to_tensor(capsule) for each value]`` (e.g.
        ``torch.utils.dlpack.from_dlpack``); None entries stay None."""
        return [None if not v.has_value() else to_tensor(v.__dlpack__()) for v in self._values]

    def __repr__(self):
        return f"OrtValueVector({self._values!r})"


def copy_tensors(src: Sequence[OrtValue], dst: Sequence[OrtValue], stream=None) -> None:
    """Copy each source tensor into the destination at the same position (same element type
    and element count; any pair of CPU and CUDA devices); complete when it returns.  `stream`
    (onnxruntime's OrtSyncStream) is accepted for the signature: ortgpu's copies are synchronous."""
    src, dst = list(src), list(dst)
    if len(src) != len(dst):
        raise RuntimeError(f"copy_tensors: {len(src)} sources but {len(dst)} destinations; they must "
                           f"have the same length")
    for i, (s, d) in enumerate(zip(src, dst)):
        for what, v in (("source", s), ("destination", d)):
            if not isinstance(v, OrtValue):
                raise TypeError(f"copy_tensors: {what} {i} must be an OrtValue, not {type(v).__name__}")
        a, b = s._tensor(f"copy_tensors source {i}"), d._tensor(f"copy_tensors destination {i}")
        if a.dtype != b.dtype or a.size != b.size:
            raise RuntimeError(f"copy_tensors: source {i} is {s.data_type()} {s.shape()} but destination {i} is "
                               f"{d.data_type()} {d.shape()}; element type and element count must match")
    for s, d in zip(src, dst):
        d_kind, s_kind = device_kind(d.device_name()), device_kind(s.device_name())
        data = s._value if s_kind is d_kind or s_kind.name == "cpu" else s_kind.to_numpy(s._value)
        d_kind.copy_into(d._value, data)
