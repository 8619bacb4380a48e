"""The QDQ format: QuantizeLinear -> DequantizeLinear pairs on the activations around each
quantized node, weights stored quantized behind a DequantizeLinear, biases as int32."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from ortgpu.optimizer.graph_tools.proto_rename import rename_definition, rename_uses
from ortgpu.quantization.graph_edit import Graph, qdq_domain
from ortgpu.quantization.quant_types import quantize_array, scale_zero_point
from ortgpu.quantization.weights import channel_axis, quantize_bias, quantize_weight

WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}
BIASED = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}


class QDQWriter:
    def __init__(self, model, settings, ranges, types):
        self.g = Graph(model)
        self.s = settings
        self.ranges = ranges
        self.types = types
        self.domain = qdq_domain(model, (settings.activation_type, settings.weight_type), settings.extra)
        self.params: dict[str, tuple] = {}      # tensor -> (scale name, zp name) of its activation QDQ
        self.report: list[dict] = []

    def _is_float(self, name: str) -> bool:
        return self.types.get(name, TensorProto.FLOAT) == TensorProto.FLOAT and bool(name)

    def _act_params(self, name: str):
        if name not in self.params:
            lo, hi = self.ranges[name]
            scale, zp = scale_zero_point(lo, hi, self.s.activation_type, self.s.activation_symmetric,
                                         False)
            self.params[name] = (self.g.add_init(f"{name}_scale", scale), self.g.add_init(f"{name}_zero_point", zp),
                                 float(scale), zp.item() if hasattr(zp, "item") else zp)
        return self.params[name]

    def _weight(self, node, idx: int, nodes_out: list) -> str:
        """Replace a constant input by quantized initializer + DequantizeLinear; returns its float name."""
        name = node.input[idx]
        w = self.g.const(name)
        per_channel = self.s.per_channel and w.ndim > 1 and node.op_type in WEIGHTED
        axis = channel_axis(node, w, self.s.extra) if per_channel else None
        q, scale, zp = quantize_weight(w, self.s.weight_type, self.s.weight_symmetric, self.s.reduce_range, axis)
        qn = self.g.add_init(f"{name}_quantized", q)
        sn, zn = self.g.add_init(f"{name}_scale", scale), self.g.add_init(f"{name}_zero_point", zp)
        out = self.g.fresh(f"{name}_DequantizeLinear_Output")
        attrs = {"axis": axis} if axis is not None else {}
        nodes_out.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [out], name=self.g.fresh(f"{name}_DQ"),
                                          domain=self.domain, **attrs))
        self.report.append({"node": node.name, "tensor": name, "kind": "weight", "scale": scale, "zero_point": zp})
        return out, scale

    def _bias(self, node, x_name, w_scale, nodes_out):
        name = node.input[2]
        b = self.g.const(name)
        x_scale = self._act_params(x_name)[2]
        q, scale = quantize_bias(b, x_scale, w_scale)
        qn = self.g.add_init(f"{name}_quantized", q)
        sn = self.g.add_init(f"{name}_scale", scale)
        zn = self.g.add_init(f"{name}_zero_point", np.zeros(np.shape(scale), np.int32))
        out = self.g.fresh(f"{name}_DequantizeLinear_Output")
        attrs = {"axis": 0} if np.ndim(scale) else {}
        nodes_out.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [out], name=self.g.fresh(f"{name}_DQ"),
                                          domain=self.domain, **attrs))   # (axis needs opset 13 or the contrib op)
        return out

    def _qdq_targets(self, nodes) -> set:
        """Float activations read or written by quantized nodes that calibration saw."""
        targets = set()
        for n in nodes:
            if not self.s.wants(n):
                continue
            for i, x in enumerate(n.input):
                if x and x not in self.g.inits and x in self.ranges:
                    targets.add(x)
            for y in n.output:
                if y in self.ranges and (y not in self.g.outputs or
                                         not self.s.extra.get("QDQDisableOutputs", False)):
                    targets.add(y)
        return targets

    def _pair(self, name: str) -> tuple[list, dict]:
        """Q -> DQ nodes for one activation; graph outputs keep their name on the DQ side."""
        sn, zn, scale, zp = self._act_params(name)
        self.report.append({"node": None, "tensor": name, "kind": "activation", "scale": scale, "zero_point": zp})
        if name in self.g.outputs:
            src, dst = self.g.fresh(f"{name}_prequant"), name
            rename = {"producer": (name, src)}
        else:
            src, dst = name, self.g.fresh(f"{name}_DequantizeLinear_Output")
            rename = {"consumers": (name, dst)}
        q = self.g.fresh(f"{name}_QuantizeLinear_Output")
        nodes = [helper.make_node("QuantizeLinear", [src, sn, zn], [q], name=self.g.fresh(f"{name}_QuantizeLinear"),
                                  domain=self.domain),
                 helper.make_node("DequantizeLinear", [q, sn, zn], [dst], name=self.g.fresh(f"{name}_DequantizeLinear"),
                                  domain=self.domain)]
        return nodes, rename

    def write(self):
        g = self.g.model.graph
        original = list(g.node)
        targets = self._qdq_targets(original)
        pairs = {t: self._pair(t) for t in sorted(targets)}
        consumer_map = {t: r["consumers"][1] for t, (_, r) in pairs.items() if "consumers" in r}
        producer_map = {t: r["producer"][1] for t, (_, r) in pairs.items() if "producer" in r}
        head, body = [], []
        for t in sorted(targets):
            if t in self.g.inputs:
                head.extend(pairs[t][0])
        renamed = _copies(original)   # readers read the DQ outputs; graph outputs' makers a new name
        scratch = helper.make_graph(renamed, g.name, [], [])
        rename_uses(scratch, consumer_map)
        made = {y for n in original for y in n.output}
        for old, new_name in producer_map.items():
            if old in made:
                rename_definition(scratch, old, new_name)
        for n, new in zip(original, scratch.node):
            if self.s.wants(n):
                self._quantize_constants(n, new, head)
            body.append(new)
            for y in n.output:
                if y in pairs:
                    body.extend(pairs[y][0])
        self.g.finish(head + body)
        return self.g.model

    def _quantize_constants(self, orig, new, head):
        w_scale = None
        widx = WEIGHTED.get(orig.op_type)
        if widx is not None and len(orig.input) > widx and orig.input[widx] in self.g.inits \
                and self._is_float(orig.input[widx]):
            new.input[widx], w_scale = self._weight(orig, widx, head)
        bidx = BIASED.get(orig.op_type)
        if (w_scale is not None and bidx is not None and len(orig.input) > bidx and orig.input[bidx] in self.g.inits
                and orig.input[0] in self.ranges):
            new.input[bidx] = self._bias(orig, orig.input[0], w_scale, head)
        for i, x in enumerate(orig.input):
            if i in (widx, bidx) or x not in self.g.inits or not self._is_float(x):
                continue
            if self.g.const(x).size > 1:
                new.input[i] = self._const_activation(orig, x, head)

    def _const_activation(self, node, name, head) -> str:
        """A constant read where an activation is expected (an Add operand, an embedding table):
        stored in the activation type with its own range, behind a DequantizeLinear."""
        c = self.g.const(name)
        qt = self.s.activation_type
        scale, zp = scale_zero_point(c.min(), c.max(), qt, self.s.activation_symmetric)
        qn = self.g.add_init(f"{name}_quantized", quantize_array(c, scale, zp, qt))
        sn, zn = self.g.add_init(f"{name}_scale", scale), self.g.add_init(f"{name}_zero_point", zp)
        out = self.g.fresh(f"{name}_DequantizeLinear_Output")
        head.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [out], name=self.g.fresh(f"{name}_DQ"),
                                     domain=self.domain))
        self.report.append({"node": node.name, "tensor": name, "kind": "constant", "scale": scale, "zero_point": zp})
        return out


def _copies(nodes) -> list:
    out = []
    for n in nodes:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        out.append(c)
    return out
