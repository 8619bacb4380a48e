"""``onnxruntime.capi.onnxruntime_validation``: checks onnxruntime runs on import, for ortgpu.

onnxruntime warns there about unsupported platforms and training builds; ortgpu is pure
Python plus optional CuPy, so the platform check passes wherever NumPy runs.
"""
from __future__ import annotations

import platform
import warnings  # noqa: F401 - onnxruntime's module exposes it

from ortgpu.version import API_VERSION, ORTGPU_VERSION, cuda_version


def check_distro_info() -> None:
    """Nothing to check: ortgpu does not depend on a Linux distribution or Windows version."""
    return None


def get_package_name_and_version_info() -> tuple[str, str, str]:
    """(package name, version, CUDA version) as onnxruntime reports them; the version is the
    onnxruntime API version ortgpu follows (ortgpu's own release is ``ortgpu.__ortgpu_version__``)."""
    return "ortgpu", API_VERSION, cuda_version


def check_training_module() -> bool:
    """False: ortgpu has no training module."""
    return False


__all__ = ["check_distro_info", "get_package_name_and_version_info", "check_training_module", "platform",
           "ORTGPU_VERSION"]
