"""4-bit (or 8-bit) weight-only quantization: constant MatMul weights become com.microsoft
MatMulNBits, blockwise along K with one scale (and optionally one zero point) per block."""
from __future__ import annotations

import numpy as np
from onnx import helper

from ortgpu.errors import InvalidArgument
from ortgpu.quantization.graph_edit import MS, Graph, ensure_domain, load


class DefaultWeightOnlyQuantConfig:
    def __init__(self, block_size=128, is_symmetric=False, accuracy_level=None, quant_format=None,
                 op_types_to_quantize=None, quant_axes=None, bits=4, channel_wised_quantize=False):
        self.block_size, self.is_symmetric, self.accuracy_level, self.bits = block_size, is_symmetric, accuracy_level, bits
        self.op_types_to_quantize = set(op_types_to_quantize or ("MatMul",))


def quantize_blocks(w: np.ndarray, block_size: int, bits: int, symmetric: bool):
    """w [K, N] -> (codes [N, blocks, block_size] uint8, scales [N, blocks] float32, zero points
    [N, blocks] uint8). Blocks run along K; a short last block is padded (zeros for the range, code 0
    stored)."""
    if block_size < 16 or block_size & (block_size - 1):
        raise InvalidArgument(f"block_size: expected a power of two >= 16, got {block_size}")
    k, n = w.shape
    blocks = -(-k // block_size)
    padded = np.zeros((blocks * block_size, n), np.float32)
    padded[:k] = w
    b = padded.T.reshape(n, blocks, block_size).astype(np.float64)
    levels = (1 << bits) - 1
    mid = 1 << (bits - 1)
    if symmetric:
        # the value of largest magnitude maps to -mid, keeping its sign: the full negative range is used
        idx = np.abs(b).argmax(axis=2)[..., None]
        extreme = np.take_along_axis(b, idx, axis=2)[..., 0]
        scale = extreme / -mid
        zp = np.full(scale.shape, mid, np.float64)
    else:
        lo, hi = np.minimum(b.min(axis=2), 0), np.maximum(b.max(axis=2), 0)
        scale = (hi - lo) / levels
        safe = np.where(scale == 0, 1.0, scale)
        zp = np.clip(np.rint(-lo / safe), 0, levels)
    safe = np.where(scale == 0, 1.0, scale)
    codes = np.clip(np.rint(b / safe[..., None]) + zp[..., None], 0, levels).astype(np.uint8)
    if k % block_size:   # rows past K are never read; code 0 there, as onnxruntime's quantizer writes
        codes[:, -1, k % block_size:] = 0
    return codes, scale.astype(np.float32), zp.astype(np.uint8)


def pack(codes: np.ndarray, bits: int, pad: int = 0) -> np.ndarray:
    """Pack along the last axis, low bits first (two 4-bit codes per byte); an odd count is
    completed with `pad` (the default zero point for zero-point rows, as onnxruntime reads them)."""
    if bits == 8:
        return codes
    if codes.shape[-1] % 2:
        codes = np.concatenate([codes, np.full(codes.shape[:-1] + (1,), pad, np.uint8)], axis=-1)
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


class MatMulNBitsQuantizer:
    """Same constructor as onnxruntime's; process() rewrites the model, model holds it after."""

    def __init__(self, model, block_size=128, is_symmetric=False, accuracy_level=None, nodes_to_exclude=None,
                 nodes_to_include=None, op_types_to_quantize=None, quant_axes=None, bits=4, algo_config=None, **_):
        if algo_config is not None:
            block_size, is_symmetric = algo_config.block_size, algo_config.is_symmetric
            accuracy_level, bits = algo_config.accuracy_level, algo_config.bits
            op_types_to_quantize = op_types_to_quantize or algo_config.op_types_to_quantize
        if bits not in (4, 8):
            raise InvalidArgument(f"bits: expected 4 or 8, got {bits}")
        self.model = load(model)
        self.block_size, self.is_symmetric, self.accuracy_level, self.bits = block_size, is_symmetric, accuracy_level, bits
        self.nodes_to_exclude = set(nodes_to_exclude or ())
        self.nodes_to_include = set(nodes_to_include or ())
        self.op_types = set(op_types_to_quantize or ("MatMul",))
        self.report: list[dict] = []

    def _matmul(self, g: Graph, node):
        w = g.const(node.input[1])
        if w is None or w.ndim != 2 or w.dtype != np.float32:
            return None
        k, n = w.shape
        codes, scales, zps = quantize_blocks(w, self.block_size, self.bits, self.is_symmetric)
        name = node.input[1]
        inputs = [node.input[0], g.add_init(f"{name}_Q{self.bits}", pack(codes, self.bits)),
                  g.add_init(f"{name}_scales", scales)]
        if not self.is_symmetric:
            inputs.append(g.add_init(f"{name}_zero_points", pack(zps, self.bits, pad=1 << (self.bits - 1))))
        attrs = {"K": k, "N": n, "bits": self.bits, "block_size": self.block_size}
        if self.accuracy_level is not None:
            attrs["accuracy_level"] = int(self.accuracy_level)
        self.report.append({"node": node.name, "tensor": name, "kind": "weight", "scale": scales, "zero_point": zps})
        return helper.make_node("MatMulNBits", inputs, list(node.output), name=node.name or g.fresh("MatMulNBits"),
                                domain=MS, **attrs)

    def process(self):
        g = Graph(self.model)
        out = []
        for node in self.model.graph.node:
            chosen = (node.op_type in self.op_types and node.name not in self.nodes_to_exclude
                      and (not self.nodes_to_include or node.name in self.nodes_to_include))
            new = self._matmul(g, node) if chosen and node.op_type == "MatMul" else None
            out.append(new if new is not None else node)
        g.finish(out)
        ensure_domain(self.model, MS)
        return self.model

    def process_and_save(self, path):
        import onnx
        self.process()
        onnx.save(self.model, str(path))
