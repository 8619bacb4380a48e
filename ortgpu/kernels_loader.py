"""Imports every kernel module so that its @kernel registrations take effect."""
import importlib
import pkgutil

import ortgpu.providers.kernels as _pkg

for _m in pkgutil.iter_modules(_pkg.__path__):
    importlib.import_module(f"{_pkg.__name__}.{_m.name}")

# The CUDA provider's own kernels register at import; the package imports without CuPy.
import ortgpu.providers.cuda  # noqa: E402,F401
