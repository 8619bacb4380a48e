"""What the Conv foldings (ConvBNFusion, ConvMulFusion, ConvAddFusion) share: finding a Conv
with constant weights whose only reader is the node to fold, reading a constant as one value
per output channel, and giving the Conv its new weights and the folded node's output.

A Conv qualifies when it is an ai.onnx Conv with one output that is not a graph output and
has exactly one reader; its weight W (rank >= 3, floating point) and its bias (if any, shape
(M,)) are constants.  Arithmetic happens in float64 and is stored in W's dtype.
"""
from __future__ import annotations

import numpy as np

from ortgpu.graph import Graph, Node
from ortgpu.graph_query import add_initializer, constants, consumers, output_names
from ortgpu.optimizer.graph_tools.graph_edit import remove


class ConvSite:
    """A qualifying Conv, its reader, and its constant weight and bias (zeros when absent)."""

    def __init__(self, conv: Node, reader: Node, w: np.ndarray, b: np.ndarray):
        self.conv, self.reader, self.w, self.b = conv, reader, w, b

    @property
    def channels(self) -> int:
        return self.w.shape[0]


def conv_sites(graph: Graph, overridable: set[str], reader_op: str):
    """Yield a ConvSite for each qualifying Conv whose sole reader is an ai.onnx `reader_op`."""
    consts = constants(graph, overridable)
    users = consumers(graph)
    outs = output_names(graph)
    for conv in graph.nodes:
        if conv.op_type != "Conv" or conv.domain != "" or len(conv.outputs) != 1:
            continue
        y = conv.outputs[0]
        readers = users.get(y, [])
        if y in outs or len(readers) != 1 or readers[0].op_type != reader_op or readers[0].domain != "":
            continue
        w = consts.get(conv.inputs[1]) if len(conv.inputs) > 1 else None
        b_name = conv.inputs[2] if len(conv.inputs) > 2 and conv.inputs[2] else None
        if w is None or w.dtype.kind != "f" or w.ndim < 3 or (b_name and b_name not in consts):
            continue
        b = consts[b_name] if b_name else np.zeros(w.shape[0], w.dtype)
        if b.shape != (w.shape[0],) or b.dtype != w.dtype:
            continue  # malformed: the kernel fails at run time with the node named
        yield ConvSite(conv, readers[0], w, b)


def per_channel(value: np.ndarray, channels: int, out_rank: int) -> np.ndarray | None:
    """`value`, which broadcasts against a Conv output (N, M, spatial...), as one float64 value
    per output channel (shape (M,)), or None when it varies along another dim, has more dims
    than the output, or would grow the output."""
    if value.ndim > out_rank or value.dtype.kind != "f":
        return None
    shape = (1,) * (out_rank - value.ndim) + value.shape
    if shape[0] != 1 or shape[1] not in (1, channels) or any(d != 1 for d in shape[2:]):
        return None
    return np.broadcast_to(value.reshape(-1).astype(np.float64), (channels,)) if shape[1] == 1 else \
        value.reshape(channels).astype(np.float64)


def refit(graph: Graph, site: ConvSite, w: np.ndarray | None, b: np.ndarray) -> None:
    """Give the Conv weights `w` (None: keep W) and bias `b` (float64, stored in W's dtype)
    and the reader's output; the caller removes the reader."""
    conv = site.conv
    tag = conv.name or conv.outputs[0]
    w_name = conv.inputs[1] if w is None else add_initializer(graph, f"{tag}_W_folded", w.astype(site.w.dtype))
    b_name = add_initializer(graph, f"{tag}_B_folded", b.astype(site.w.dtype))
    conv.inputs = [conv.inputs[0], w_name, b_name]
    conv.outputs = [site.reader.outputs[0]]
    conv.proto = None  # the node no longer matches its file form


def fold_per_channel(graph: Graph, overridable: set[str], reader_op: str, fold) -> int:
    """Fold each qualifying Conv's `reader_op` (Add, Mul) whose other operand is a constant of
    W's dtype that is one value per output channel (see per_channel) into the Conv, and remove
    the reader.  `fold(site, vector)` gives the new (W or None, float64 bias) from the float64
    per-channel vector.  Returns the number of readers folded."""
    consts = constants(graph, overridable)
    dead = []
    for site in list(conv_sites(graph, overridable, reader_op)):
        reader = site.reader
        other = reader.inputs[1] if reader.inputs[0] == site.conv.outputs[0] else reader.inputs[0]
        value = consts.get(other)
        vector = per_channel(value, site.channels, site.w.ndim) if value is not None else None
        if vector is None or value.dtype != site.w.dtype:
            continue
        refit(graph, site, *fold(site, vector))
        dead.append(reader)
    remove(graph, dead)
    return len(dead)
