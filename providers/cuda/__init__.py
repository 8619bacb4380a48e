"""The CUDA execution provider: CuPy arrays, cuBLAS GEMMs, cuDNN convolutions.

Importing this package never needs CuPy (it is imported to learn whether CUDA is
available); ``cuda_available()`` says whether a device can be used.  Importing it also
registers the provider="cuda" kernels: cuBLAS MatMul/Gemm (blas), cuDNN Conv when
nvidia-cudnn-frontend is installed (cudnn), the raw CUDA kernels of
``ortgpu.providers.cuda.kernels`` when that package is present, and the fused ops of the
optimizer built on them (fused, attention).
"""
from ortgpu.providers.cuda.options import CUDAProviderConfig, ProviderOptionError, parse_cuda_options
from ortgpu.providers.cuda.provider import CUDAExecutionProvider, cuda_available, cuda_device_count
from ortgpu.providers.cuda import blas as _blas  # noqa: F401  (registers MatMul, Gemm)
from ortgpu.providers.cuda import cudnn as _cudnn  # noqa: F401  (registers Conv when cuDNN FE is installed)

try:
    import ortgpu.providers.cuda.kernels  # noqa: F401  (raw CUDA kernels, when present)
    from ortgpu.providers.cuda import attention as _attention  # noqa: F401  (ortgpu::Attention)
    from ortgpu.providers.cuda import fused as _fused  # noqa: F401  (the other ortgpu-domain fused ops)
except ImportError as _e:  # absent, or it needs CuPy at import; any other failure should say why
    _missing = getattr(_e, "name", None) or ""
    if _missing != "ortgpu.providers.cuda.kernels" and not _missing.startswith(("cupy", "cupyx", "cupy_backends")):
        raise

__all__ = ["CUDAExecutionProvider", "cuda_available", "cuda_device_count", "CUDAProviderConfig",
           "ProviderOptionError", "parse_cuda_options"]
