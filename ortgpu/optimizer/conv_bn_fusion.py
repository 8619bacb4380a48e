"""ConvBNFusion (basic level): Conv followed by an inference BatchNormalization becomes one Conv.

Rules: the Conv qualifies (see conv_folding: constant weights, its output read only by the
BatchNormalization and not a graph output); the BatchNormalization's scale, B, mean and var
are constants of shape (M,); it is in inference mode (no training_mode, opset 9+ or
spatial=1 before) with one output.  Then W' = W * s[m] and B' = (B - mean) * s + beta, with
s = scale / sqrt(var + epsilon), computed in float64 and stored in the weight's dtype.
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph
from ortgpu.graph_query import constants
from ortgpu.optimizer.graph_tools.conv_folding import conv_sites, refit
from ortgpu.optimizer.graph_tools.graph_edit import remove


def fuse_conv_batchnorm(graph: Graph, providers, overridable: set[str]) -> int:
    consts = constants(graph, overridable)
    dead = []
    for site in list(conv_sites(graph, overridable, "BatchNormalization")):
        bn = site.reader
        if (bn.inputs[0] != site.conv.outputs[0] or len([o for o in bn.outputs if o]) != 1
                or bn.outputs[0] == "" or bn.attrs.get("training_mode", 0)
                or (bn.opset < 9 and not bn.attrs.get("spatial", 1))):
            continue
        params = [consts.get(p) for p in bn.inputs[1:5]]
        if len(params) != 4 or any(p is None or p.shape != (site.channels,) for p in params):
            continue
        scale, beta, mean, var = (p.astype(np.float64) for p in params)
        s = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        w = site.w.astype(np.float64) * s.reshape((-1,) + (1,) * (site.w.ndim - 1))
        refit(graph, site, w, (site.b.astype(np.float64) - mean) * s + beta)
        dead.append(bn)
    remove(graph, dead)
    return len(dead)
