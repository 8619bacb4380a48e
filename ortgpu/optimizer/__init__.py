"""Graph optimizations by level, as onnxruntime's graph_optimization_level.

Each pass is a function in its own file, with its rules in its docstring, that changes the
graph in place and returns how many rewrites it made (0: the pass changed nothing).
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.constant_folding import fold_constants
from ortgpu.optimizer.elementwise_fusion import fuse_elementwise_chains
from ortgpu.optimizer.fuse_conv_bn import fuse_conv_batchnorm
from ortgpu.optimizer.nhwc_transformer import transform_to_nhwc
from ortgpu.optimizer.remove_unused import remove_unused_initializers
from ortgpu.options import GraphOptimizationLevel

BASIC_PASSES = {
    "ConstantFolding": fold_constants,
    "ConvBNFusion": fuse_conv_batchnorm,
    "UnusedInitializerElimination": remove_unused_initializers,
}
# Fusions applied to the nodes a provider owns (same signature as the basic passes).
EXTENDED_PASSES: dict = {
    "ElementwiseChainFusion": fuse_elementwise_chains,   # last: after the pattern fusions
}
# Layout changes (NHWC for float16 convolution on the GPU).
LAYOUT_PASSES: dict = {
    "NhwcTransformer": transform_to_nhwc,
}


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
    return done
