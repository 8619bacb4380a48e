"""Execution providers, the op-kernel registry and the kernels shared by NumPy and CuPy."""
