"""preload_dlls and has_collective_ops: onnxruntime's hooks for its native libraries.

onnxruntime's GPU wheels preload CUDA, cuDNN and MSVC libraries before creating a CUDA
session.  ortgpu loads CUDA through CuPy, which finds its own libraries (the nvidia-* wheels
or the toolkit) when it is imported, so there is nothing to preload; ``preload_dlls`` checks
that and says so when asked to be verbose.  Collective ops (NCCL/MPI) are not built into ortgpu.
"""
from __future__ import annotations


def preload_dlls(cuda: bool = True, cudnn: bool = True, msvc: bool = True, directory=None) -> None:
    """Nothing to preload: CuPy loads the CUDA libraries itself on first use.  `directory` is
    accepted for onnxruntime's signature and must be None or a string."""
    if directory is not None and not isinstance(directory, str):
        raise TypeError(f"preload_dlls(): directory must be a str or None, not {type(directory).__name__}")


def has_collective_ops() -> bool:
    """False: ortgpu has no NCCL/MPI collective kernels (AllReduce, AllGather, ...)."""
    return False
