"""Small graph-editing helpers the writers share: initializers by name, producers and consumers,
new initializers, and the opset/domain a Q/DQ node of a given type needs."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ortgpu.quantization.quant_types import QuantType

MS = "com.microsoft"


def load(model_or_path) -> onnx.ModelProto:
    if isinstance(model_or_path, onnx.ModelProto):
        m = onnx.ModelProto()
        m.CopyFrom(model_or_path)
        return m
    return onnx.load(str(model_or_path))


def opset(model: onnx.ModelProto, domain: str = "") -> int:
    for o in model.opset_import:
        if o.domain in (domain, "ai.onnx" if domain == "" else domain):
            return o.version
    return 0


def ensure_domain(model: onnx.ModelProto, domain: str, version: int = 1):
    if not any(o.domain == domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(domain, version))


def qdq_domain(model: onnx.ModelProto, qtypes, extra: dict) -> str:
    """Q/DQ of 16- and 4-bit types need opset 21 (float8 19); older models use the contrib ones."""
    need = 13
    if QuantType.QFLOAT8E4M3FN in qtypes and opset(model) < 19:
        # the contrib Q/DQ take no float8; raise the default opset as onnxruntime's tool does
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 19
        model.ir_version = max(model.ir_version, 9)
    for qt in qtypes:
        if qt in (QuantType.QInt16, QuantType.QUInt16, QuantType.QInt4, QuantType.QUInt4):
            need = max(need, 21)
        elif qt == QuantType.QFLOAT8E4M3FN:
            need = max(need, 19)
    if extra.get("UseQDQContribOps", False) or opset(model) < need:
        ensure_domain(model, MS)
        return MS
    return ""


class Graph:
    """Index over one graph: initializers, producers, consumers, graph outputs, fresh names."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        g = model.graph
        self.inits = {i.name: i for i in g.initializer}
        self.outputs = {o.name for o in g.output}
        self.inputs = {i.name for i in g.input if i.name not in self.inits}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for x in n.input:
                self.consumers.setdefault(x, []).append(n)
        self.new_inits: list = []
        self._names = {n.name for n in g.node} | set(self.inits) | {x for n in g.node for x in n.output}

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def const(self, name: str) -> np.ndarray | None:
        init = self.inits.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def add_init(self, base: str, array) -> str:
        name = self.fresh(base)
        self.new_inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def finish(self, nodes: list, drop_inits=()):
        """Replace the graph's nodes; drop initializers nothing reads any more."""
        g = self.model.graph
        copies = []
        for n in nodes:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            copies.append(c)
        nodes = copies
        del g.node[:]
        g.node.extend(nodes)
        used = {x for n in nodes for x in n.input} | self.outputs
        for sub in nodes:
            for a in sub.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    used |= {x for n in a.g.node for x in n.input}
        keep = [i for i in g.initializer if i.name in used and i.name not in drop_inits]
        keep += [i for i in self.new_inits if i.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        names = {i.name for i in keep}
        kept_inputs = [i for i in g.input if i.name not in self.inits or i.name in names]
        del g.input[:]
        g.input.extend(kept_inputs)
