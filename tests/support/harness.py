"""Differential harness for com.microsoft ops: one-node models run by ortgpu's CPU provider and
by onnxruntime 1.32's CPU provider (which implements the domain), in the style of
tests/test_differential.py.

Configuration ``i`` of a case family ``name`` draws from ``default_rng([crc32(name), i])``, so a
failure message names what replays it.  A configuration onnxruntime refuses is skipped and not
counted; each family states a minimum of configurations that must have run.  For the ops that
onnxruntime has on its CUDA provider only (BiasAdd, BiasSplitGelu, GroupNorm, NhwcConv, ...), a
case carries ``oracle``: the same computation written with ai.onnx ops, which onnxruntime runs.
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

import ortgpu

onnxruntime.set_default_logger_severity(3)
MS = "com.microsoft"
CPU = ["CPUExecutionProvider"]
F32, F16, F64, I32, I64 = np.float32, np.float16, np.float64, np.int32, np.int64
TOL = {np.dtype(F32): (1e-4, 1e-5), np.dtype(F16): (5e-3, 5e-3), np.dtype(F64): (1e-10, 1e-12)}


@dataclasses.dataclass
class Case:
    """One node (or a small graph in ``nodes``); feeds are graph inputs, consts initializers.

    ``out_types`` gives each output's element type (TensorProto code) where it differs from the
    first input's; ``oracle`` is an alternative list of ai.onnx nodes computing the same outputs.
    """
    node: onnx.NodeProto
    feeds: dict
    consts: dict = dataclasses.field(default_factory=dict)
    out_types: dict = dataclasses.field(default_factory=dict)
    opset: int = 17
    oracle: list | None = None
    post: object = None   # fn(outputs) -> outputs, applied to both sides: drops undefined parts
    rtol: float | None = None
    atol: float | None = None
    note: str = ""

    def __post_init__(self):
        self.feeds = {k: np.asarray(v) for k, v in self.feeds.items()}
        self.consts = {k: np.asarray(v) for k, v in self.consts.items()}

    def describe(self) -> str:
        attrs = {a.name: helper.get_attribute_value(a) for a in self.node.attribute}
        shapes = {k: (str(v.dtype), v.shape) for k, v in {**self.feeds, **self.consts}.items()}
        return f"{self.node.op_type} inputs {list(self.node.input)} attrs {attrs} shapes {shapes} {self.note}"

    def model(self, nodes=None) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                  for k, v in self.feeds.items()]
        inits = [numpy_helper.from_array(v, k) for k, v in self.consts.items()]
        first = helper.np_dtype_to_tensor_dtype(next(iter({**self.feeds, **self.consts}.values())).dtype)
        outputs = [helper.make_tensor_value_info(o, self.out_types.get(o, first), None)
                   for o in self.node.output if o]
        graph = helper.make_graph(nodes or [self.node], "contrib", inputs, outputs, initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset),
                                                    helper.make_opsetid(MS, 1)])
        m.ir_version = 10
        return m


def draw(gen, name: str, i: int) -> Case:
    """Case `i` of `name`: the first configuration `gen(rng)` does not refuse (None), from a
    generator seeded by both, so every run draws the same cases."""
    rng = np.random.default_rng([zlib.crc32(name.encode()), i])
    for _ in range(100):
        case = gen(rng)
        if case is not None:
            return case
    raise AssertionError(f"{name}: generator found no valid configuration")


def ort_run(case: Case):
    """onnxruntime's outputs (of the oracle graph when the case has one), or None if it refuses."""
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = case.model(case.oracle)
    try:
        sess = onnxruntime.InferenceSession(model.SerializeToString(), so, providers=CPU)
        return sess.run(None, case.feeds)
    except Exception:  # noqa: BLE001 - a configuration onnxruntime refuses is not counted
        return None


def ortgpu_run(case: Case):
    sess = ortgpu.InferenceSession(case.model().SerializeToString(), providers=CPU)
    return sess.run(None, case.feeds)


def compare(case: Case, expected, got, tol=None):
    """Outputs `got` against onnxruntime's `expected`: dtype, shape, then values within the
    case's tolerance or `tol` ({dtype: (rtol, atol)}, this module's TOL by default)."""
    tol = TOL if tol is None else tol
    assert len(got) == len(expected), f"{len(got)} outputs, onnxruntime has {len(expected)}"
    for k, (e, g) in enumerate(zip(expected, got)):
        g = np.asarray(g)
        assert g.dtype == e.dtype, f"output {k}: dtype {g.dtype}, onnxruntime {e.dtype}"
        assert g.shape == e.shape, f"output {k}: shape {g.shape}, onnxruntime {e.shape}"
        if e.dtype.kind == "f":
            rtol, atol = tol.get(e.dtype, (1e-4, 1e-5))
            rtol = case.rtol if case.rtol is not None else rtol
            atol = case.atol if case.atol is not None else atol
            np.testing.assert_allclose(g.astype(F64), e.astype(F64), rtol=rtol, atol=atol,
                                       equal_nan=True, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(g, e, err_msg=f"output {k}")


def run_family(gen, name: str, count: int, minimum: int):
    """Draw ``count`` configurations, compare each with onnxruntime, require ``minimum`` ran."""
    ran = 0
    for i in range(count):
        case = draw(gen, name, i)
        expected = ort_run(case)
        if expected is None:
            continue
        try:
            got = ortgpu_run(case)
            if case.post is not None:
                expected, got = case.post(expected), case.post([np.asarray(g) for g in got])
            compare(case, expected, got)
        except Exception as e:
            raise AssertionError(f"{name} configuration {i}: {case.describe()}\n{e}") from e
        ran += 1
    assert ran >= minimum, f"{name}: only {ran} of {count} configurations ran in onnxruntime (need {minimum})"


# ------------------------------------------------------------------ drawing helpers

def rnd(rng, shape, dtype=F32, scale=1.0):
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return (rng.standard_normal(shape) * scale).astype(dtype)


def pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def node(op, inputs, outputs, domain=MS, **attrs):
    return helper.make_node(op, inputs, outputs, domain=domain,
                            **{k: v for k, v in attrs.items() if v is not None})


def onnx_node(op, inputs, outputs, **attrs):
    return node(op, inputs, outputs, domain="", **attrs)


T_INT32, T_INT64, T_FLOAT = TensorProto.INT32, TensorProto.INT64, TensorProto.FLOAT
