"""Helpers of the test suite (model builders, the device double, the CUDA emulator, oracles)."""
