"""onnxruntime's weight-packing helpers for its quantization tools (quantize_matmul_*bits,
quantize_qdq_matmul_*bits, quantize_matmul_bnb4, pack_fp4_weights_for_cuda_moe_gemm).

These fill buffers in the exact layouts of onnxruntime's own com.microsoft MatMulNBits /
MatMulBnb4 / MoE kernels, and are called by ``onnxruntime.quantization``.  ortgpu has no kernels
for those ops, so nothing in it consumes the layouts; the helpers are refused with that reason.
"""
from __future__ import annotations

from ortgpu.errors import NotImplemented


def _refuse(name: str):
    def refused(*args, **kwargs):
        raise NotImplemented(f"{name}: this packs weights for onnxruntime's com.microsoft MatMulNBits/MatMulBnb4/"
                             f"MoE kernels, which ortgpu does not have; use float16/bfloat16 weights "
                             f"(ortgpu.precision) or QuantizeLinear/DequantizeLinear models instead")
    refused.__name__ = refused.__qualname__ = name
    refused.__doc__ = f"onnxruntime's {name} (not implemented in ortgpu; see the module docstring)."
    return refused


quantize_matmul_2bits = _refuse("quantize_matmul_2bits")
quantize_matmul_4bits = _refuse("quantize_matmul_4bits")
quantize_matmul_8bits = _refuse("quantize_matmul_8bits")
quantize_qdq_matmul_2bits = _refuse("quantize_qdq_matmul_2bits")
quantize_qdq_matmul_4bits = _refuse("quantize_qdq_matmul_4bits")
quantize_matmul_bnb4 = _refuse("quantize_matmul_bnb4")
pack_fp4_weights_for_cuda_moe_gemm = _refuse("pack_fp4_weights_for_cuda_moe_gemm")
