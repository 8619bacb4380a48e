"""Graph optimizations by level, as onnxruntime's graph_optimization_level.

Each pass is a function in its own file, with its rules in its docstring, that changes the
graph in place and returns how many rewrites it made (0: the pass changed nothing).
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer import fused_bodies  # noqa: F401  (registers the fused ops' function bodies)
from ortgpu.optimizer.attention_fusion import fuse_attention
from ortgpu.optimizer.bias_gelu_fusion import fuse_bias_gelu
from ortgpu.optimizer.constant_folding import fold_constants
from ortgpu.optimizer.conv_activation_fusion import fuse_conv_activation
from ortgpu.optimizer.conv_add_activation_fusion import fuse_conv_add_activation
from ortgpu.optimizer.fuse_conv_bn import fuse_conv_batchnorm
from ortgpu.optimizer.gelu_fusion import fuse_fast_gelu, fuse_gelu
from ortgpu.optimizer.gemm_activation_fusion import fuse_gemm_activation
from ortgpu.optimizer.layer_norm_fusion import fuse_layer_norm
from ortgpu.optimizer.remove_unused import remove_unused_initializers
from ortgpu.optimizer.skip_layer_norm_fusion import fuse_skip_layer_norm
from ortgpu.options import GraphOptimizationLevel

BASIC_PASSES = {
    "ConstantFolding": fold_constants,
    "ConvBNFusion": fuse_conv_batchnorm,
    "UnusedInitializerElimination": remove_unused_initializers,
}
# Fusions applied to the nodes a provider owns (same signature as the basic passes).
EXTENDED_PASSES: dict = {
    "GeluFusion": fuse_gelu,
    "FastGeluFusion": fuse_fast_gelu,
    "LayerNormFusion": fuse_layer_norm,
    "AttentionFusion": fuse_attention,
    "SkipLayerNormFusion": fuse_skip_layer_norm,
    "BiasGeluFusion": fuse_bias_gelu,
    "ConvActivationFusion": fuse_conv_activation,
    "ConvAddActivationFusion": fuse_conv_add_activation,
    "GemmActivationFusion": fuse_gemm_activation,
}
# Layout changes (NHWC for float16 convolution on the GPU).
LAYOUT_PASSES: dict = {}


def optimize(graph: Graph, level: int, providers, overridable: set[str],
             disabled: frozenset[str] = frozenset()) -> dict[str, int]:
    """Run the passes of `level` (and below) that are not disabled, on `graph` and then on its
    subgraphs (If branches, Loop and Scan bodies); {pass name: rewrites}."""
    done: dict[str, int] = {}
    if level >= GraphOptimizationLevel.ORT_ENABLE_BASIC:
        for name, fn in BASIC_PASSES.items():
            if name not in disabled:
                done[name] = done.get(name, 0) + fn(graph, providers, overridable)
    if level >= GraphOptimizationLevel.ORT_ENABLE_EXTENDED:
        for name, fn in EXTENDED_PASSES.items():
            if name not in disabled:
                done[name] = done.get(name, 0) + fn(graph, providers, overridable)
    if level >= GraphOptimizationLevel.ORT_ENABLE_LAYOUT:
        for name, fn in LAYOUT_PASSES.items():
            if name not in disabled:
                done[name] = done.get(name, 0) + fn(graph, providers, overridable)
    for node in graph.nodes:
        for sub in node.subgraphs():
            for name, n in optimize(sub, level, providers, set(), disabled).items():
                done[name] = done.get(name, 0) + n
            for domain, version in sub.opsets.items():  # a fused op's domain, imported by the model
                graph.opsets.setdefault(domain, version)
    return done
