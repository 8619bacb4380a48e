"""ConvAddFusion (basic level): Conv followed by an addition of a per-channel constant
becomes one Conv whose bias is B + c.

Rules: the Conv qualifies (see conv_folding: constant weights, its output read only by the
Add and not a graph output); the other Add operand is a constant that is one value per output
channel or a single value: after right-aligning it with the output (N, M, spatial...) its
dims are 1 except possibly M, and it has no more dims than the output.  A constant that
varies along a spatial dim, or whose broadcast would grow the output, stays an Add.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.graph_tools.conv_folding import fold_per_channel


def fuse_conv_add(graph: Graph, providers, overridable: set[str]) -> int:
    return fold_per_channel(graph, overridable, "Add", lambda site, shift: (None, site.b.astype("float64") + shift))
