"""onnxruntime's model packages (ModelPackage*): a directory format bundling model variants
for several EPs with per-variant executor information.  ortgpu does not read or write it: its
variant selection is written for onnxruntime's plugin EPs; load the variant's .onnx file with
InferenceSession instead."""
from __future__ import annotations

from ortgpu.enums import OrtEnum
from ortgpu.errors import NotImplemented

_WHY = ("ortgpu does not read or write onnxruntime model packages (variant selection targets "
        "onnxruntime's plugin execution providers); open the package's .onnx variant with InferenceSession")


class ModelPackageWriteMode(OrtEnum):
    PRESERVE = 0
    DENSE = 1


class _Refused:
    def __init__(self, *args, **kwargs):
        raise NotImplemented(f"{type(self).__name__}: {_WHY}")


class ModelPackage(_Refused):
    """A package being written (refused)."""


class ModelPackageOptions(_Refused):
    """Options for opening a package (refused)."""


class ModelPackageContext(_Refused):
    """An opened package (refused)."""


class ModelPackageComponentContext(_Refused):
    """A component of an opened package (refused)."""
