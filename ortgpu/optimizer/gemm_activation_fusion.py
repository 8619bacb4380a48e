"""GemmActivationFusion (extended level): Gemm followed by an activation becomes one
FusedGemm, onnxruntime's ``com.microsoft`` op where it takes the activation, else
``ortgpu::FusedGemm`` (its kernel runs the activation on the Gemm's result).

Rules: the Gemm (ai.onnx, float output) has one output, read only by the activation and
not a graph output; the activation is one of activation_patterns.py (Relu, LeakyRelu,
Sigmoid, Tanh, HardSigmoid, HardSwish, also written out as y * Clip(y + 3, 0, 6) / 6, Clip
with constant bounds); the provider that would
run the Gemm has a FusedGemm kernel.  alpha, beta, transA, transB and inputs carry over.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.graph_tools.activation_patterns import fuse_with_activation


def fuse_gemm_activation(graph: Graph, providers, overridable: set[str]) -> int:
    return fuse_with_activation(graph, providers, overridable, "Gemm", "FusedGemm")
