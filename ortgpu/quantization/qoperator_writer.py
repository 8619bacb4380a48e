"""The QOperator format: quantized nodes replaced by their integer operators (QLinearConv,
QLinearMatMul, com.microsoft QLinearAdd/QLinearMul/QGemm/QLinearGlobalAveragePool), tensors kept
quantized between consecutive quantized nodes, DequantizeLinear where float readers remain."""
from __future__ import annotations

import numpy as np
from onnx import helper

from ortgpu.quantization.graph_edit import MS, Graph, ensure_domain
from ortgpu.quantization.quant_types import quantize_array, scale_zero_point
from ortgpu.quantization.weights import channel_axis, quantize_bias, quantize_weight

# Ops that move or select values only: run on the quantized tensor, keep its scale.
PASS_THROUGH = {"MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}


class QOperatorWriter:
    def __init__(self, model, settings, ranges, types):
        self.g = Graph(model)
        self.s = settings
        self.ranges = ranges
        self.quantized: dict[str, tuple] = {}    # float name -> (quantized name, scale name, zp name)
        self.params: dict[str, tuple] = {}
        self.report: list[dict] = []
        ensure_domain(model, MS)

    def _params(self, name):
        if name not in self.params:
            lo, hi = self.ranges[name]
            scale, zp = scale_zero_point(lo, hi, self.s.activation_type, self.s.activation_symmetric)
            self.params[name] = (self.g.add_init(f"{name}_scale", scale), self.g.add_init(f"{name}_zero_point", zp),
                                 float(scale))
            self.report.append({"node": None, "tensor": name, "kind": "activation", "scale": scale, "zero_point": zp})
        return self.params[name]

    def _q(self, name, out):
        """The quantized version of an activation, adding a QuantizeLinear the first time."""
        if name not in self.quantized:
            sn, zn, _ = self._params(name)
            qn = self.g.fresh(f"{name}_quantized")
            out.append(helper.make_node("QuantizeLinear", [name, sn, zn], [qn], name=self.g.fresh(f"{name}_QuantizeLinear")))
            self.quantized[name] = (qn, sn, zn)
        return self.quantized[name]

    def _w(self, node, idx, per_channel_ok=True):
        name = node.input[idx]
        w = self.g.const(name)
        axis = channel_axis(node, w, self.s.extra) if self.s.per_channel and per_channel_ok and w.ndim > 1 else None
        q, scale, zp = quantize_weight(w, self.s.weight_type, self.s.weight_symmetric, self.s.reduce_range, axis)
        self.report.append({"node": node.name, "tensor": name, "kind": "weight", "scale": scale, "zero_point": zp})
        return (self.g.add_init(f"{name}_quantized", q), self.g.add_init(f"{name}_scale", scale),
                self.g.add_init(f"{name}_zero_point", zp), scale)

    def _operand(self, node, idx, out):
        x = node.input[idx]
        if x not in self.g.inits:
            return self._q(x, out)
        # a constant operand of an elementwise op shares the activation type (the op's T)
        c = self.g.const(x)
        scale, zp = scale_zero_point(c.min(), c.max(), self.s.activation_type, self.s.activation_symmetric)
        self.report.append({"node": node.name, "tensor": x, "kind": "constant", "scale": scale, "zero_point": zp})
        return (self.g.add_init(f"{x}_quantized", quantize_array(c, scale, zp, self.s.activation_type)),
                self.g.add_init(f"{x}_scale", scale), self.g.add_init(f"{x}_zero_point", zp))

    def _out(self, node):
        y = node.output[0]
        sn, zn, _ = self._params(y)
        qn = self.g.fresh(f"{y}_quantized")
        self.quantized[y] = (qn, sn, zn)
        return qn, sn, zn

    def _ready(self, node) -> bool:
        need = [x for x in node.input[:2] if x]
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            need = [node.input[0]]
            if node.input[1] not in self.g.inits:
                return False
        return all(x in self.ranges or x in self.g.inits for x in need) and node.output[0] in self.ranges

    def _conv_like(self, node, out):
        x = self._q(node.input[0], out)
        wq, ws, wz, wscale = self._w(node, 1)
        inputs = [*x, wq, ws, wz]
        y = self._out(node)
        bias = node.input[2] if len(node.input) > 2 else ""
        if node.op_type == "Conv":
            inputs += list(y[1:])
            if bias:
                q, _ = quantize_bias(self.g.const(bias), self._params(node.input[0])[2], wscale)
                inputs.append(self.g.add_init(f"{bias}_quantized", q))
            new = helper.make_node("QLinearConv", inputs, [y[0]], name=self.g.fresh(f"{node.name}_quant"))
        elif node.op_type == "MatMul":
            new = helper.make_node("QLinearMatMul", inputs + list(y[1:]), [y[0]], name=self.g.fresh(f"{node.name}_quant"))
        else:
            alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
            qb = ""
            if bias:
                q, _ = quantize_bias(self.g.const(bias) * alpha, self._params(node.input[0])[2], wscale)
                qb = self.g.add_init(f"{bias}_quantized", q)
            new = helper.make_node("QGemm", inputs + [qb] + list(y[1:]), [y[0]], name=self.g.fresh(f"{node.name}_quant"),
                                   domain=MS)
            new.attribute.extend([a for a in node.attribute if a.name in ("transA", "transB", "alpha")])
            out.append(new)
            return
        new.attribute.extend([a for a in node.attribute if node.op_type == "Conv"])
        out.append(new)

    def _binary(self, node, out):
        a = self._operand(node, 0, out)
        b = self._operand(node, 1, out)
        y = self._out(node)
        out.append(helper.make_node(f"QLinear{node.op_type}", [*a, *b, *y[1:]], [y[0]],
                                    name=self.g.fresh(f"{node.name}_quant"), domain=MS))

    def _gap(self, node, out):
        x = self._q(node.input[0], out)
        y = self._out(node)
        out.append(helper.make_node("QLinearGlobalAveragePool", [*x, *y[1:]], [y[0]], channels_last=0,
                                    name=self.g.fresh(f"{node.name}_quant"), domain=MS))

    def _pass(self, node, out):
        qn, sn, zn = self.quantized[node.input[0]]
        y = node.output[0]
        qy = self.g.fresh(f"{y}_quantized")
        new = helper.make_node(node.op_type, [qn] + list(node.input[1:]), [qy], name=node.name)
        new.attribute.extend(node.attribute)
        out.append(new)
        self.quantized[y] = (qy, sn, zn)

    def write(self):
        handlers = {"Conv": self._conv_like, "MatMul": self._conv_like, "Gemm": self._conv_like,
                    "Add": self._binary, "Mul": self._binary, "GlobalAveragePool": self._gap}
        out, float_made = [], set(self.g.inputs) | set(self.g.inits)
        for n in self.g.model.graph.node:
            if self.s.wants(n) and n.op_type in PASS_THROUGH and n.input[0] in self.quantized \
                    and len(n.output) == 1:
                self._pass(n, out)
                continue
            if self.s.wants(n) and n.op_type in handlers and self._ready(n):
                handlers[n.op_type](n, out)
                continue
            for x in n.input:                     # a float reader of a tensor only quantized so far
                self._float(x, out, float_made)
            out.append(n)
            float_made.update(n.output)
        for y in self.g.outputs:
            self._float(y, out, float_made)
        self.g.finish(out)
        return self.g.model

    def _float(self, x, out, float_made):
        if x and x not in float_made and x in self.quantized:
            qn, sn, zn = self.quantized[x]
            out.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [x], name=self.g.fresh(f"{x}_DequantizeLinear")))
            float_made.add(x)
