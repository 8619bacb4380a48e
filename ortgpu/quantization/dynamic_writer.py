"""quantize_dynamic's graph: weights stored int8/uint8, activations quantized at run time by
DynamicQuantizeLinear, integer MatMul/Conv, and a float rescale by input scale x weight scale."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ortgpu.quantization.graph_edit import Graph
from ortgpu.quantization.quant_types import QuantType
from ortgpu.quantization.weights import quantize_weight


class DynamicWriter:
    def __init__(self, model, settings):
        self.g = Graph(model)
        self.s = settings
        self.report: list[dict] = []

    def _const_weight(self, node, idx):
        name = node.input[idx] if len(node.input) > idx else ""
        w = self.g.const(name)
        return None if w is None or w.dtype != np.float32 else w

    def _store(self, node, name, w, axis):
        q, scale, zp = quantize_weight(w, self.s.weight_type, self.s.weight_symmetric, self.s.reduce_range, axis)
        self.report.append({"node": node.name, "tensor": name, "kind": "weight", "scale": scale, "zero_point": zp})
        return (self.g.add_init(f"{name}_quantized", q), self.g.add_init(f"{name}_scale", scale),
                self.g.add_init(f"{name}_zero_point", zp))

    def _dynamic_input(self, x, out):
        xq, xs, xz = (self.g.fresh(f"{x}_quantized"), self.g.fresh(f"{x}_scale"), self.g.fresh(f"{x}_zero_point"))
        out.append(helper.make_node("DynamicQuantizeLinear", [x], [xq, xs, xz], name=self.g.fresh(f"{x}_QuantizeLinear")))
        return xq, xs, xz

    def _rescale(self, node, integer_out, xs, ws, y, out, scale_shape=None):
        cast = self.g.fresh(f"{y}_output_quantized_cast_output")
        out.append(helper.make_node("Cast", [integer_out], [cast], to=TensorProto.FLOAT, name=self.g.fresh(f"{node.name}_cast")))
        scale = self.g.fresh(f"{node.name}_scales_mul_output")
        out.append(helper.make_node("Mul", [xs, ws], [scale], name=self.g.fresh(f"{node.name}_scales_mul")))
        if scale_shape is not None:
            shp = self.g.add_init(f"{node.name}_scale_shape", np.array(scale_shape, np.int64))
            reshaped = self.g.fresh(f"{scale}_reshaped")
            out.append(helper.make_node("Reshape", [scale, shp], [reshaped], name=self.g.fresh(f"{node.name}_scale_reshape")))
            scale = reshaped
        out.append(helper.make_node("Mul", [cast, scale], [y], name=self.g.fresh(f"{node.name}_output_scale_mul")))

    def _matmul(self, node, out) -> bool:
        w = self._const_weight(node, 1)
        if w is None or w.ndim != 2:
            return False
        axis = 1 if self.s.per_channel else None
        wq, ws, wz = self._store(node, node.input[1], w, axis)
        xq, xs, xz = self._dynamic_input(node.input[0], out)
        acc = self.g.fresh(f"{node.output[0]}_output_quantized")
        out.append(helper.make_node("MatMulInteger", [xq, wq, xz, wz], [acc], name=self.g.fresh(f"{node.name}_quant")))
        self._rescale(node, acc, xs, ws, node.output[0], out)
        return True

    def _conv(self, node, out) -> bool:
        w = self._const_weight(node, 1)
        if w is None:
            return False
        wq, ws, wz = self._store(node, node.input[1], w, None)
        xq, xs, xz = self._dynamic_input(node.input[0], out)
        acc = self.g.fresh(f"{node.output[0]}_output_quantized")
        conv = helper.make_node("ConvInteger", [xq, wq, xz, wz], [acc], name=self.g.fresh(f"{node.name}_quant"))
        conv.attribute.extend(node.attribute)
        out.append(conv)
        y = node.output[0]
        has_bias = len(node.input) > 2 and node.input[2]
        scaled = self.g.fresh(f"{y}_scaled") if has_bias else y
        self._rescale(node, acc, xs, ws, scaled, out)
        if has_bias:
            shp = self.g.add_init(f"{node.name}_bias_shape", np.array([1, -1] + [1] * (w.ndim - 2), np.int64))
            b = self.g.fresh(f"{node.input[2]}_reshaped")
            out.append(helper.make_node("Reshape", [node.input[2], shp], [b], name=self.g.fresh(f"{node.name}_bias_reshape")))
            out.append(helper.make_node("Add", [scaled, b], [y], name=self.g.fresh(f"{node.name}_bias_add")))
        return True

    def _gather(self, node, out) -> bool:
        w = self._const_weight(node, 0)
        if w is None:
            return False
        wq, ws, wz = self._store(node, node.input[0], w, None)
        gathered = self.g.fresh(f"{node.output[0]}_quantized")
        new = helper.make_node("Gather", [wq, node.input[1]], [gathered], name=node.name)
        new.attribute.extend(node.attribute)
        out.append(new)
        out.append(helper.make_node("DequantizeLinear", [gathered, ws, wz], [node.output[0]],
                                    name=self.g.fresh(f"{node.name}_DequantizeLinear")))
        return True

    def _gemm_as_matmul(self, nodes) -> list:
        """onnxruntime's quantize_dynamic first rewrites every plain Gemm (alpha = beta = 1, A not
        transposed) as MatMul, plus an Add of C when there is one, with a constant B transposed
        into a new `<B>_Transposed` initializer where transB is set; the MatMul rule then
        quantizes it. The same here, so both tools write the same graph for Gemm models."""
        out = []
        for n in nodes:
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            if (n.op_type != "Gemm" or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0
                    or a.get("transA", 0)):
                out.append(n)
                continue
            b = n.input[1]
            if a.get("transB", 0):
                w = self.g.const(b)
                if w is None:
                    t = self.g.fresh(f"{b}_Transposed")
                    out.append(helper.make_node("Transpose", [b], [t], name=self.g.fresh(f"{n.name}_Transpose")))
                else:
                    t = self.g.add_init(f"{b}_Transposed", np.ascontiguousarray(w.T))
                    self.g.inits[t] = self.g.new_inits[-1]
                b = t
            has_c = len(n.input) > 2 and n.input[2]
            y = self.g.fresh(f"{n.output[0]}_MatMul") if has_c else n.output[0]
            out.append(helper.make_node("MatMul", [n.input[0], b], [y], name=self.g.fresh(f"{n.name}_MatMul")))
            if has_c:
                out.append(helper.make_node("Add", [y, n.input[2]], list(n.output), name=self.g.fresh(f"{n.name}_Add")))
        return out

    def write(self):
        if self.s.weight_type not in (QuantType.QInt8, QuantType.QUInt8):
            from ortgpu.errors import InvalidArgument
            raise InvalidArgument(f"weight_type: dynamic quantization takes QInt8 or QUInt8, got {self.s.weight_type.name}")
        handlers = {"MatMul": self._matmul, "Conv": self._conv, "Gather": self._gather}
        out = []
        for n in self._gemm_as_matmul(list(self.g.model.graph.node)):
            h = handlers.get(n.op_type)
            if h is None or not self.s.wants(n) or not h(n, out):
                out.append(n)
        self.g.finish(out)
        return self.g.model
