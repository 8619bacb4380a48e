"""Versions: the onnxruntime API version ortgpu implements, and ortgpu's own release.

``ortgpu.__version__`` is the onnxruntime version whose Python API ortgpu follows, because
programs check ``onnxruntime.__version__`` to decide which API they may call; ortgpu's own
release (pyproject's version) is ``ortgpu.__ortgpu_version__``.
"""
from __future__ import annotations

import platform
import sys

API_VERSION = "1.32.0"       # the onnxruntime release whose Python API ortgpu follows
PACKAGE_NAME = "ortgpu"


def _own_version() -> str:
    """ortgpu's release from the installed distribution's metadata (pyproject's version)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415
    try:
        return version(PACKAGE_NAME)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


ORTGPU_VERSION = _own_version()


def get_version_string() -> str:
    """Both versions: '1.32.0 (ortgpu 0.1.0)'; onnxruntime returns its own version here."""
    return f"{API_VERSION} (ortgpu {ORTGPU_VERSION})"


def _cuda_version() -> str:
    """The CUDA runtime version CuPy was built for ('12.8'), or '' without CuPy (imports CuPy)."""
    try:
        import cupy  # noqa: PLC0415
        v = int(cupy.cuda.runtime.runtimeGetVersion())
    except Exception:  # noqa: BLE001 - no CuPy or no driver: no CUDA build to report
        return ""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _cuda_major_installed() -> str:
    """The CUDA major version of the installed CuPy wheel ('12' for cupy-cuda12x), read from the
    package metadata so that ``import ortgpu`` does not import CuPy; '' without one."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415
    for major in ("13", "12", "11"):
        try:
            version(f"cupy-cuda{major}x")
        except PackageNotFoundError:
            continue
        return major
    return ""


def get_build_info() -> str:
    """What this build is, in onnxruntime's 'ORT Build Info: key=value, ...' shape."""
    cuda = _cuda_version()
    return (f"ORT Build Info: ortgpu={ORTGPU_VERSION}, onnxruntime-api={API_VERSION}, "
            f"build type=Python, cuda={cuda or 'none'}")


def print_debug_info() -> None:
    """Print versions, platform and the providers this machine can run, as onnxruntime does."""
    from ortgpu.providers_select import get_available_providers  # noqa: PLC0415
    print(f"onnxruntime API version: {API_VERSION}")
    print(f"ortgpu version: {ORTGPU_VERSION}")
    print(f"platform: {platform.platform()}")
    print(f"python: {sys.version.split()[0]}")
    print(f"CUDA runtime (CuPy): {_cuda_version() or 'not installed'}")
    print(f"available providers: {', '.join(get_available_providers())}")


# onnxruntime's module-level constants
version = API_VERSION
package_name = PACKAGE_NAME
cuda_version = _cuda_major_installed()  # onnxruntime: the CUDA version of the build ('' for a CPU build)
