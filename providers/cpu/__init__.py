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

    @property
    def xp(self):
        return np
