"""ortgpu's own graph (ortgpu/graph.py) against onnx-ir as the optimizer's in-memory graph:
load and optimize times on a BERT-base-shaped model and PP-OCRv4 det.

    pip install onnx-ir     # not a dependency of ortgpu: only this measurement needs it
    python benchmarks/bench_graph_ir.py [--models bert_base_like,ppocrv4_det] [--runs N] [--json OUT]

Models (no torch, no internet beyond PyPI):
  bert_base_like  built here with onnx.helper in the shape a torch export of BERT-base has
                  (12 layers, hidden 768, 12 heads, FFN 3072, sequence 128, vocabulary 30522,
                  random float32 weights, ~110 M parameters): embeddings with LayerNorm written
                  out as ReduceMean/Sub/Pow/Sqrt/Div, attention with Reshape targets computed by
                  Shape/Gather/Unsqueeze/Concat, erf GELU, the pooler; opset 14;
  ppocrv4_det     PP-OCRv4 text detection from the rapidocr-onnxruntime wheel (tests/support/model_zoo.py).

Per model, medians of ``--runs`` (each run from a fresh copy of the loaded model):
  parse           onnx.load of the file (common to both)
  prepare         ortgpu.loading.prepare_model: checks, shape inference (common to both)
  to_graph        the ModelProto to ortgpu's Graph (graph.from_proto)         | onnx-ir: serde.deserialize_model
  passes          the rewrites both have: identity elimination, common subexpressions, unused
                  nodes, equal initializers shared, topological sort      | onnx-ir: its passes of the same names
  optimize_basic  ortgpu's ORT_ENABLE_BASIC optimize() (CPU provider)
  optimize_all    ortgpu's ORT_ENABLE_ALL optimize() (CPU provider)
  to_proto        Graph back to a GraphProto (model_writer.graph_to_proto)   | onnx-ir: serde.serialize_model
The onnx-ir path of a session would be: deserialize, optimize on the IR, then give the runtime
its Graph (to_proto + to_graph, or an adapter of the same cost): its extra cost is
deserialize + serialize + a second to_graph, against which the passes' gain is set.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from common import git_commit, machine, write_json  # noqa: E402

import ortgpu  # noqa: E402
from ortgpu.graph import from_proto, topological_order  # noqa: E402
from ortgpu.loading import prepare_model  # noqa: E402
from ortgpu.model_writer import graph_to_proto  # noqa: E402
from ortgpu.optimizer import optimize  # noqa: E402
from ortgpu.optimizer.common_subexpression_elimination import eliminate_common_subexpressions  # noqa: E402
from ortgpu.optimizer.constant_sharing import share_constants  # noqa: E402
from ortgpu.optimizer.dead_node_elimination import eliminate_dead_nodes  # noqa: E402
from ortgpu.optimizer.identity_elimination import eliminate_identity  # noqa: E402
from ortgpu.providers_select import create, normalize  # noqa: E402

MODELS = ("bert_base_like", "ppocrv4_det")
Level = ortgpu.GraphOptimizationLevel


# ---------------------------------------------------------------- a BERT-base-shaped model

class _Builder:
    """Nodes, initializers and fresh names for one model."""

    def __init__(self, seed: int = 0):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def op(self, op_type: str, inputs, **attrs) -> str:
        out = self.name(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"/{out}", **attrs))
        return out

    def weight(self, *shape, scale: float = 0.02) -> str:
        name = self.name("w")
        value = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def const(self, value, dtype=np.int64) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def layer_norm(self, x: str, hidden: int) -> str:
        mean = self.op("ReduceMean", [x], axes=[-1])
        d = self.op("Sub", [x, mean])
        var = self.op("ReduceMean", [self.op("Pow", [d, self.const(2.0, np.float32)])], axes=[-1])
        std = self.op("Sqrt", [self.op("Add", [var, self.const(1e-12, np.float32)])])
        y = self.op("Div", [d, std])
        return self.op("Add", [self.op("Mul", [y, self.weight(hidden, scale=1.0)]), self.weight(hidden)])

    def dim(self, x: str, axis: int) -> str:
        """Dim `axis` of `x` as a 1-element tensor, the way torch exports compute it."""
        g = self.op("Gather", [self.op("Shape", [x]), self.const(axis)], axis=0)
        return self.op("Unsqueeze", [g, self.const([0])])

    def linear(self, x: str, n_in: int, n_out: int) -> str:
        return self.op("Add", [self.weight(n_out), self.op("MatMul", [x, self.weight(n_in, n_out)])])


def bert_base_like(layers=12, hidden=768, heads=12, ffn=3072, vocab=30522, max_pos=512) -> onnx.ModelProto:
    """A BERT-base-shaped model as a torch export writes it (see the module docstring)."""
    b, head = _Builder(), hidden // heads
    emb = b.op("Add", [b.op("Gather", [b.weight(vocab, hidden), "input_ids"]),
                       b.op("Gather", [b.weight(2, hidden), "token_type_ids"])])
    seq = b.dim("input_ids", 1)
    positions = b.op("Unsqueeze", [b.op("Range", [b.const(0), b.op("Squeeze", [seq, b.const([0])]),
                                                  b.const(1)]), b.const([0])])
    x = b.layer_norm(b.op("Add", [emb, b.op("Gather", [b.weight(max_pos, hidden), positions])]), hidden)
    m = b.op("Cast", [b.op("Unsqueeze", ["attention_mask", b.const([1, 2])])], to=TensorProto.FLOAT)
    mask = b.op("Mul", [b.op("Sub", [b.const(1.0, np.float32), m]), b.const(-10000.0, np.float32)])
    for _ in range(layers):
        def heads_of(t):
            target = b.op("Concat", [b.dim(t, 0), b.dim(t, 1), b.const([heads]), b.const([head])], axis=0)
            return b.op("Reshape", [t, target])
        q = b.op("Transpose", [heads_of(b.linear(x, hidden, hidden))], perm=[0, 2, 1, 3])
        k = b.op("Transpose", [heads_of(b.linear(x, hidden, hidden))], perm=[0, 2, 3, 1])
        v = b.op("Transpose", [heads_of(b.linear(x, hidden, hidden))], perm=[0, 2, 1, 3])
        scores = b.op("Add", [b.op("Div", [b.op("MatMul", [q, k]), b.const(math.sqrt(head), np.float32)]), mask])
        ctx = b.op("Transpose", [b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])], perm=[0, 2, 1, 3])
        merged = b.op("Reshape", [ctx, b.op("Concat", [b.dim(ctx, 0), b.dim(ctx, 1), b.const([hidden])], axis=0)])
        x = b.layer_norm(b.op("Add", [b.linear(merged, hidden, hidden), x]), hidden)
        h = b.linear(x, hidden, ffn)
        erf = b.op("Erf", [b.op("Div", [h, b.const(math.sqrt(2.0), np.float32)])])
        gelu = b.op("Mul", [b.op("Mul", [h, b.op("Add", [erf, b.const(1.0, np.float32)])]), b.const(0.5, np.float32)])
        x = b.layer_norm(b.op("Add", [b.linear(gelu, ffn, hidden), x]), hidden)
    first = b.op("Gather", [x, b.const(0)], axis=1)
    pooled = b.op("Tanh", [b.op("Gemm", [first, b.weight(hidden, hidden), b.weight(hidden)])])
    b.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    b.nodes.append(helper.make_node("Identity", [pooled], ["pooler_output"]))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
            for n in ("input_ids", "token_type_ids", "attention_mask")]
    outs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]),
            helper.make_tensor_value_info("pooler_output", TensorProto.FLOAT, ["batch", hidden])]
    graph = helper.make_graph(b.nodes, "bert_base_like", ints, outs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def model_file(name: str, folder: str) -> str:
    if name == "ppocrv4_det":
        from support.model_zoo import model_path  # noqa: PLC0415
        return model_path(name)
    path = os.path.join(folder, f"{name}.onnx")
    onnx.save(bert_base_like(), path)
    return path


# ---------------------------------------------------------------- the measurement

def _timed(fn, runs: int, setup=None) -> tuple[float, object]:
    """Median seconds of `runs` calls of fn(setup()) (setup untimed; fn() without it), and the
    last result."""
    times, out = [], None
    for _ in range(runs):
        args = () if setup is None else (setup(),)
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def ortgpu_passes(graph) -> dict:
    """The rewrites both graphs offer, on ortgpu's Graph; rewrites per pass."""
    counts = {"identity": eliminate_identity(graph, [], set()),
              "cse": eliminate_common_subexpressions(graph, [], set()),
              "unused_nodes": eliminate_dead_nodes(graph, [], set()),
              "shared_initializers": share_constants(graph, [], set())}
    graph.nodes = topological_order(graph)
    return counts


def onnx_ir_passes(model):
    """The same rewrites with onnx-ir's own passes."""
    from onnx_ir.passes import common  # noqa: PLC0415
    for p in (common.IdentityEliminationPass(), common.CommonSubexpressionEliminationPass(),
              common.RemoveUnusedNodesPass(), common.DeduplicateInitializersPass(),
              common.TopologicalSortPass()):
        p(model)
    return model


def measure(name: str, path: str, runs: int) -> dict:
    import onnx_ir as ir  # noqa: PLC0415
    cpu = create(normalize(["CPUExecutionProvider"], None))
    row: dict = {"model": name}
    row["parse_s"], _ = _timed(lambda: onnx.load(path), runs)
    row["prepare_s"], (model, _) = _timed(lambda: prepare_model(path), runs)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    row["nodes"] = len(model.graph.node)
    row["ortgpu_to_graph_s"], graph = _timed(lambda: from_proto(model.graph, opsets), runs)
    fresh = lambda: from_proto(model.graph, opsets)  # noqa: E731
    row["ortgpu_passes_s"], row["ortgpu_pass_rewrites"] = _timed(ortgpu_passes, runs, fresh)
    for level, key in ((Level.ORT_ENABLE_BASIC, "basic"), (Level.ORT_ENABLE_ALL, "all")):
        def run_level(g, level=level):
            optimize(g, level, cpu, set())
            return g
        row[f"ortgpu_optimize_{key}_s"], g = _timed(run_level, runs, fresh)
        row[f"nodes_{key}"] = len(g.nodes)
    row["ortgpu_to_proto_s"], _ = _timed(lambda: graph_to_proto(graph), runs)
    row["onnx_ir_to_ir_s"], irm = _timed(lambda: ir.serde.deserialize_model(model), runs)
    row["onnx_ir_passes_s"], _ = _timed(onnx_ir_passes, runs, lambda: ir.serde.deserialize_model(model))
    row["onnx_ir_to_proto_s"], _ = _timed(lambda: ir.serde.serialize_model(irm), runs)
    row["onnx_ir_nodes_after_passes"] = _nodes_after(ir, model)
    row["onnx_ir_extra_s"] = row["onnx_ir_to_ir_s"] + row["onnx_ir_to_proto_s"] + row["ortgpu_to_graph_s"]
    return row


def _nodes_after(ir, model) -> int:
    m = ir.serde.deserialize_model(model)
    onnx_ir_passes(m)
    return len(list(m.graph))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    try:
        import onnx_ir  # noqa: F401,PLC0415
    except ImportError:
        print("onnx-ir is not installed: pip install onnx-ir")
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            row = measure(name, model_file(name, folder), args.runs)
            rows.append(row)
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if args.json:
        import onnx_ir  # noqa: F811,PLC0415
        write_json(args.json, {"date": datetime.date.today().isoformat(), "commit": git_commit(),
                               "machine": machine(), "onnx_ir": onnx_ir.__version__, "onnx": onnx.__version__,
                               "runs": args.runs, "rows": rows}, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
