"""CPUExecutionProvider: every kernel on NumPy."""
from __future__ import annotations

import numpy as np

from ortgpu.providers.base import ExecutionProvider
from ortgpu.providers.registry import SHARED


class CPUExecutionProvider(ExecutionProvider):
    name = "CPUExecutionProvider"
    device = "cpu"
    kernel_sources = ("cpu", SHARED)
    option_defaults: dict[str, str] = {}

    def parse_options(self, options: dict) -> dict:
        """onnxruntime's CPU provider takes no options and ignores whatever it is given."""
        return {}

    @property
    def xp(self):
        return np
