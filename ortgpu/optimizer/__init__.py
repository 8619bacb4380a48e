"""Graph optimizations by level, as onnxruntime's graph_optimization_level.

Each pass is a function in its own file, named as onnxruntime names its transformer
(``<x>_elimination.py``, ``<x>_fusion.py``), with its rules in its docstring, that changes the
graph in place and returns how many rewrites it made (0: the pass changed nothing).  What the
passes share lives in :mod:`ortgpu.optimizer.graph_tools`; the fused ops they create, in
:mod:`ortgpu.fused_ops`.  The
passes of a level run in table order, round after round, until a round changes nothing
(at most MAX_ROUNDS), as onnxruntime repeats its transformers; then the next level's.
"""
from __future__ import annotations

from ortgpu.errors import Fail, _OrtError
from ortgpu.graph import Graph
from ortgpu.graph_query import constants
from ortgpu import fused_ops  # noqa: F401  (registers the fused ops' function bodies)
from ortgpu.optimizer.attention_fusion import fuse_attention
from ortgpu.optimizer.bias_gelu_fusion import fuse_bias_gelu
from ortgpu.optimizer.bn_activation_fusion import fuse_bn_activation
from ortgpu.optimizer.bn_mul_add_fusion import fuse_bn_mul_add
from ortgpu.optimizer.cast_elimination import eliminate_cast
from ortgpu.optimizer.common_subexpression_elimination import eliminate_common_subexpressions
from ortgpu.optimizer.constant_folding import fold_constants
from ortgpu.optimizer.constant_sharing import share_constants
from ortgpu.optimizer.conv_activation_fusion import fuse_conv_activation
from ortgpu.optimizer.conv_add_activation_fusion import fuse_conv_add_activation
from ortgpu.optimizer.conv_add_fusion import fuse_conv_add
from ortgpu.optimizer.conv_bn_fusion import fuse_conv_batchnorm
from ortgpu.optimizer.conv_mul_fusion import fuse_conv_mul
from ortgpu.optimizer.dead_node_elimination import eliminate_dead_nodes
from ortgpu.optimizer.dropout_elimination import eliminate_dropout
from ortgpu.optimizer.elementwise_fusion import fuse_elementwise_chains
from ortgpu.optimizer.expand_elimination import eliminate_expand
from ortgpu.optimizer.gelu_fusion import fuse_fast_gelu, fuse_gelu
from ortgpu.optimizer.gemm_activation_fusion import fuse_gemm_activation
from ortgpu.optimizer.graph_tools.type_refresh import refresh_types
from ortgpu.optimizer.identity_elimination import eliminate_identity
from ortgpu.optimizer.layer_norm_fusion import fuse_layer_norm
from ortgpu.optimizer.matmul_add_fusion import fuse_matmul_add
from ortgpu.optimizer.nhwc_transformer import transform_to_nhwc
from ortgpu.optimizer.noop_elimination import eliminate_noop
from ortgpu.optimizer.qdq_selector_action_transformer import fuse_qdq_groups
from ortgpu.optimizer.relu_quant_fusion import fuse_relu_quant
from ortgpu.optimizer.reshape_fusion import fuse_reshape
from ortgpu.optimizer.skip_layer_norm_fusion import fuse_skip_layer_norm
from ortgpu.optimizer.slice_elimination import eliminate_slice
from ortgpu.optimizer.unsqueeze_elimination import eliminate_unsqueeze
from ortgpu.optimizer.unused_initializer_elimination import remove_unused_initializers
from ortgpu.options import GraphOptimizationLevel

MAX_ROUNDS = 10

# Provider-independent rewrites (onnxruntime's names, so that disabled_optimizers takes them).
BASIC_PASSES = {
    "EliminateIdentity": eliminate_identity,
    "EliminateSlice": eliminate_slice,
    "UnsqueezeElimination": eliminate_unsqueeze,
    "EliminateDropout": eliminate_dropout,
    "ExpandElimination": eliminate_expand,
    "CastElimination": eliminate_cast,
    "NoopElimination": eliminate_noop,
    "ConvAddFusion": fuse_conv_add,
    "ConvMulFusion": fuse_conv_mul,
    "ConvBNFusion": fuse_conv_batchnorm,
    "BNMulAddFusion": fuse_bn_mul_add,   # after ConvBNFusion: a Conv's BatchNormalization folds there
    "ConstantSharing": share_constants,
    "CommonSubexpressionElimination": eliminate_common_subexpressions,
    "ConstantFolding": fold_constants,
    "MatMulAddFusion": fuse_matmul_add,
    "ReshapeFusion": fuse_reshape,
    "ReluQuantFusion": fuse_relu_quant,
    "DeadNodeElimination": eliminate_dead_nodes,
    "UnusedInitializerElimination": remove_unused_initializers,
}
# Fusions applied to the nodes a provider owns (same signature as the basic passes).
EXTENDED_PASSES: dict = {
    "QDQSelectorActionTransformer": fuse_qdq_groups,   # first: DQ -> op -> Q groups to quantized ops
    "GeluFusion": fuse_gelu,
    "FastGeluFusion": fuse_fast_gelu,
    "LayerNormFusion": fuse_layer_norm,
    "AttentionFusion": fuse_attention,
    "SkipLayerNormFusion": fuse_skip_layer_norm,
    "BiasGeluFusion": fuse_bias_gelu,
    "ConvActivationFusion": fuse_conv_activation,
    "ConvAddActivationFusion": fuse_conv_add_activation,
    "BNActivationFusion": fuse_bn_activation,
    "GemmActivationFusion": fuse_gemm_activation,
    "ElementwiseChainFusion": fuse_elementwise_chains,   # last: after the pattern fusions
}
# Layout changes (NHWC for float16 convolution on the GPU).
LAYOUT_PASSES: dict = {
    "NhwcTransformer": transform_to_nhwc,
}


def pattern_fusions() -> list[str]:
    """Names of the extended pattern fusions (every extended pass but the element-wise chain
    fusion, which runs after them): tests of another pass disable these to see it alone."""
    return [name for name in EXTENDED_PASSES if name != "ElementwiseChainFusion"]


def passes_for(level: int) -> list[dict]:
    """The pass tables that `level` runs, in order."""
    tables = []
    if level >= GraphOptimizationLevel.ORT_ENABLE_BASIC:
        tables.append(BASIC_PASSES)
    if level >= GraphOptimizationLevel.ORT_ENABLE_EXTENDED:
        tables.append(EXTENDED_PASSES)
    if level >= GraphOptimizationLevel.ORT_ENABLE_LAYOUT:
        tables.append(LAYOUT_PASSES)
    return tables


def _run_pass(name, fn, graph: Graph, providers, overridable: set[str]) -> int:
    """One pass; a failure inside it (a bug, or a model it did not expect) is a Fail naming it,
    which `disabled_optimizers=[name]` works around."""
    try:
        return fn(graph, providers, overridable)
    except _OrtError:
        raise
    except Exception as e:
        raise Fail(f"Graph optimization pass {name} failed on graph '{graph.name}': "
                   f"{type(e).__name__}: {e}") from e


def optimize(graph: Graph, level: int, providers, overridable: set[str],
             disabled: frozenset[str] = frozenset(), subgraph: bool = False) -> dict[str, int]:
    """Run the passes of `level` (and below) that are not disabled, on `graph` and then on its
    subgraphs (If branches, Loop and Scan bodies); {pass name: rewrites} for every pass run.
    After a round that changed the (top-level) graph, its value types are inferred again."""
    done: dict[str, int] = {}
    for table in passes_for(level):
        active = {name: fn for name, fn in table.items() if name not in disabled}
        for _ in range(MAX_ROUNDS):
            changed = 0
            for name, fn in active.items():
                n = _run_pass(name, fn, graph, providers, overridable)
                done[name] = done.get(name, 0) + n
                changed += n
            if not changed:
                break
            if not subgraph:
                refresh_types(graph)
    visible = {**graph.outer_constants, **constants(graph, overridable)}  # constants to its subgraphs
    for node in graph.nodes:
        for sub in node.subgraphs():
            sub.outer_constants = visible
            for name, n in optimize(sub, level, providers, set(), disabled, True).items():
                done[name] = done.get(name, 0) + n
            sub.outer_constants = {}  # read while optimizing only: the plan holds no such view
            for domain, version in sub.opsets.items():  # a fused op's domain, imported by the model
                graph.opsets.setdefault(domain, version)
    return done
