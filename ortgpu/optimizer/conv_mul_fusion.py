"""ConvMulFusion (basic level): Conv followed by a multiplication by a per-channel constant
becomes one Conv, W' = W * s[m] and B' = B * s.

Rules: the Conv qualifies (see conv_folding: constant weights, its output read only by the
Mul and not a graph output); the other Mul operand is a constant that is one value per output
channel or a single value: after right-aligning it with the output (N, M, spatial...) its
dims are 1 except possibly M, and it has no more dims than the output.
"""
from __future__ import annotations

from ortgpu.graph import Graph
from ortgpu.optimizer.conv_folding import conv_sites, per_channel, refit
from ortgpu.optimizer.graph_edit import constants, remove


def fuse_conv_mul(graph: Graph, providers, overridable: set[str]) -> int:
    consts = constants(graph, overridable)
    dead = []
    for site in list(conv_sites(graph, overridable, "Mul")):
        mul = site.reader
        other = mul.inputs[1] if mul.inputs[0] == site.conv.outputs[0] else mul.inputs[0]
        value = consts.get(other)
        scale = per_channel(value, site.channels, site.w.ndim) if value is not None else None
        if scale is None or value.dtype != site.w.dtype:
            continue
        w = site.w.astype("float64") * scale.reshape((-1,) + (1,) * (site.w.ndim - 1))
        refit(graph, site, w, site.b.astype("float64") * scale)
        dead.append(mul)
    remove(graph, dead)
    return len(dead)
