"""ConvMulFusion (basic level): Conv followed by a multiplication by a per-channel constant
becomes one Conv, W' = W * s[m] and B' = B * s.

Rules: the Conv qualifies (see conv_folding: constant weights, its output read only by the
Mul and not a graph output); the other Mul operand is a constant that is one value per output
channel or a single value: after right-aligning it with the output (N, M, spatial...) its
dims are 1 except possibly M, and it has no more dims than the output.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.graph_tools.conv_folding import fold_per_channel


def _scale(site, scale):
    """W' = W * s[m] (s along the output-channel dim), B' = B * s."""
    w = site.w.astype("float64") * scale.reshape((-1,) + (1,) * (site.w.ndim - 1))
    return w, site.b.astype("float64") * scale


def fuse_conv_mul(graph: Graph, providers, overridable: set[str]) -> int:
    return fold_per_channel(graph, overridable, "Mul", _scale)
