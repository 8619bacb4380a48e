"""OrtEnum, the base of ortgpu's copies of onnxruntime's enums (GraphOptimizationLevel,
ExecutionMode, OrtMemType, ...): int enums that print as onnxruntime's do."""
from __future__ import annotations

import enum


class OrtEnum(enum.IntEnum):
    """An int enum whose str() is 'ClassName.MEMBER', as onnxruntime's pybind11 enums print
    (a plain IntEnum prints its number)."""

    def __str__(self):
        return f"{type(self).__name__}.{self.name}"
