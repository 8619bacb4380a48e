"""The fuzz campaign of issue 18: seeded mutants of small models, each loaded and run by
onnxruntime and by ortgpu in a worker subprocess that has an address-space limit and a time
limit per case.

A case is fully determined by its seed: ``make_case(seed)`` picks a base model, applies one to
three byte-level or structural mutations and builds feeds from the mutant's declared inputs.
``run_cases(seeds)`` runs them in workers (``python tests/support/fuzzing.py --worker``) and returns one
Outcome per seed; ``scripts/fuzz_replay.py SEED`` replays one case in this process.

An outcome is a failure of ortgpu when it crashed, hung (where onnxruntime neither hung nor
crashed: "hang_both" is reported, not failed; an endless Loop is one), raised an
untyped exception (anything but ortgpu.errors' classes or MemoryError, unless onnxruntime
raised the same built-in class), or returned outputs that differ from onnxruntime's.
"""
from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h

# --- base models --------------------------------------------------------------------------
_OPSET = [h.make_opsetid("", 17)]


def _f(name, shape, t=T.FLOAT):
    return h.make_tensor_value_info(name, t, shape)


def _init(name, arr):
    return onnx.numpy_helper.from_array(np.asarray(arr), name)


def _mlp():
    rng = np.random.default_rng(1)
    nodes = [h.make_node("MatMul", ["x", "W"], ["m"]), h.make_node("Add", ["m", "b"], ["a"]),
             h.make_node("Relu", ["a"], ["r"]), h.make_node("Softmax", ["r"], ["y"], axis=1),
             h.make_node("ReduceMean", ["x"], ["z"], axes=[1], keepdims=1)]
    inits = [_init("W", rng.standard_normal((4, 3)).astype(np.float32)), _init("b", np.float32([0.1, -0.2, 0.3]))]
    return h.make_graph(nodes, "mlp", [_f("x", ["N", 4])], [_f("y", ["N", 3]), _f("z", ["N", 1])], inits)


def _cnn():
    rng = np.random.default_rng(2)
    nodes = [h.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             h.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             h.make_node("Flatten", ["p"], ["f"], axis=1), h.make_node("Gemm", ["f", "G", "gb"], ["y"], transB=1)]
    inits = [_init("W", rng.standard_normal((2, 1, 3, 3)).astype(np.float32)), _init("B", np.float32([0.5, -0.5])),
             _init("G", rng.standard_normal((3, 18)).astype(np.float32)), _init("gb", np.zeros(3, np.float32))]
    return h.make_graph(nodes, "cnn", [_f("x", [1, 1, 6, 6])], [_f("y", [1, 3])], inits)


def _reduce():
    nodes = [h.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=1),
             h.make_node("ReduceMax", ["x"], ["m"], axes=[2], keepdims=0),
             h.make_node("Cast", ["i"], ["fi"], to=T.FLOAT), h.make_node("Greater", ["x", "t"], ["g"]),
             h.make_node("Where", ["g", "x", "t"], ["w"]), h.make_node("ReduceSum", ["w", "ax"], ["s"], keepdims=0),
             h.make_node("CumSum", ["x", "one"], ["cs"])]
    inits = [_init("t", np.float32(0.25)), _init("ax", np.int64([1])), _init("one", np.int64(2))]
    return h.make_graph(nodes, "reduce", [_f("x", [2, 3, 4])],
                        [_f("fi", [2, 1, 4], T.FLOAT), _f("m", [2, 3]), _f("s", [2, 4]), _f("cs", [2, 3, 4])], inits)


def _control():
    then = h.make_graph([h.make_node("Identity", ["x"], ["t"])], "then", [], [_f("t", [3])])
    other = h.make_graph([h.make_node("Neg", ["x"], ["e"])], "else", [], [_f("e", [3])])
    body = h.make_graph([h.make_node("Identity", ["c_in"], ["c_out"]), h.make_node("Add", ["v_in", "x"], ["v_out"]),
                         h.make_node("Mul", ["v_out", "v_out"], ["sq"])], "body",
                        [_f("i", [], T.INT64), _f("c_in", [], T.BOOL), _f("v_in", [3])],
                        [_f("c_out", [], T.BOOL), _f("v_out", [3]), _f("sq", [3])])
    nodes = [h.make_node("ReduceSum", ["x"], ["s"], keepdims=0), h.make_node("Greater", ["s", "zero"], ["c"]),
             h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
             h.make_node("Loop", ["M", "", "x"], ["v", "scan"], body=body)]
    inits = [_init("zero", np.float32(0)), _init("M", np.int64(3))]
    return h.make_graph(nodes, "control", [_f("x", [3])], [_f("y", [3]), _f("v", [3]), _f("scan", [3, 3])], inits)


def _shapes():
    nodes = [h.make_node("Reshape", ["x", "shape"], ["r"]), h.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
             h.make_node("Concat", ["t", "t"], ["c"], axis=0), h.make_node("Slice", ["c", "st", "en"], ["sl"]),
             h.make_node("Gather", ["sl", "idx"], ["g"], axis=1), h.make_node("Unsqueeze", ["g", "ax0"], ["u"]),
             h.make_node("Expand", ["u", "eshape"], ["y"]), h.make_node("Shape", ["y"], ["shp"])]
    inits = [_init("shape", np.int64([3, 4])), _init("st", np.int64([1])), _init("en", np.int64([6])),
             _init("idx", np.int64([0, 2, -1])), _init("ax0", np.int64([0])), _init("eshape", np.int64([2, 1, 1]))]
    return h.make_graph(nodes, "shapes", [_f("x", [12])], [_f("y", None), _f("shp", [3], T.INT64)], inits)


def _strings():
    nodes = [h.make_node("Cast", ["x"], ["n"], to=T.FLOAT), h.make_node("StringConcat", ["x", "sep"], ["c"]),
             h.make_node("RegexFullMatch", ["x"], ["m"], pattern="[0-9.e+-]+"),
             h.make_node("Cast", ["n"], ["back"], to=T.STRING)]
    inits = [h.make_tensor("sep", T.STRING, [], [b"|"])]
    g = h.make_graph(nodes, "strings", [_f("x", [4], T.STRING)],
                     [_f("n", [4]), _f("c", [4], T.STRING), _f("m", [4], T.BOOL), _f("back", [4], T.STRING)], inits)
    return g, [h.make_opsetid("", 21)]


BASES = {"mlp": _mlp, "cnn": _cnn, "reduce": _reduce, "control": _control, "shapes": _shapes, "strings": _strings}


def base_model(name: str) -> onnx.ModelProto:
    built = BASES[name]()
    graph, opsets = built if isinstance(built, tuple) else (built, _OPSET)
    return h.make_model(graph, opset_imports=opsets, ir_version=9)


# --- mutations ------------------------------------------------------------------------------
_INTS = [-(2**63), -(2**31), -2, -1, 0, 1, 2, 3, 5, 7, 64, 2**31, 2**62]
_FLOATS = [0.0, -1.0, 0.5, float("nan"), float("inf"), -float("inf"), 1e30, 1e-30]
_STRINGS = [b"", b"abc", b"\x00", b"NOTSET", b"SAME_UPPER", b"(a+)+b", b"(a)\\1", b"\xff\xfe", b"[", b"linear"]
_TYPES = [T.FLOAT, T.UINT8, T.INT8, T.INT32, T.INT64, T.STRING, T.BOOL, T.FLOAT16, T.DOUBLE, T.UINT32, T.UINT64,
          T.BFLOAT16, 0, 999]
_OPS = ["Relu", "Neg", "Abs", "Sigmoid", "Identity", "Add", "Sub", "Mul", "Div", "MatMul", "Softmax", "Cast",
        "ReduceMean", "ReduceSum", "ArgMax", "Concat", "Reshape", "Transpose", "Gather", "Where", "Greater",
        "Not", "Loop", "If", "Squeeze", "Unsqueeze", "Expand", "Tile", "Pad", "Slice", "TopK", "Sqrt", "Log",
        "Pow", "Max", "MaxPool", "AveragePool", "Conv", "Gemm", "Flatten", "Shape", "Size", "ConstantOfShape",
        "Range", "NonZero", "CumSum", "Einsum", "Split", "OneHot", "NoSuchOp", "StringConcat", "RegexFullMatch"]
_OPSETS = [1, 6, 7, 9, 10, 11, 12, 13, 15, 17, 18, 19, 20, 21, 23, 25, 99]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _all_nodes(graph: onnx.GraphProto) -> list:
    out = []
    for n in graph.node:
        out.append(n)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out.extend(_all_nodes(a.g))
    return out


def _names(graph: onnx.GraphProto) -> list[str]:
    names = [vi.name for vi in graph.input] + [t.name for t in graph.initializer]
    for n in graph.node:
        names.extend(n.output)
    return names


def _mut_attribute(rng, m):
    nodes = [n for n in _all_nodes(m.graph) if n.attribute]
    if not nodes:
        return "attribute:none"
    n = _pick(rng, nodes)
    a = _pick(rng, list(n.attribute))
    if a.type == onnx.AttributeProto.INT:
        a.i = _pick(rng, _INTS)
    elif a.type == onnx.AttributeProto.INTS and len(a.ints):
        a.ints[int(rng.integers(len(a.ints)))] = _pick(rng, _INTS)
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = _pick(rng, _FLOATS)
    elif a.type == onnx.AttributeProto.STRING:
        a.s = _pick(rng, _STRINGS)
    elif rng.random() < 0.5:
        n.attribute.remove(a)
    return f"attribute:{n.op_type}.{a.name}"


def _mut_add_attribute(rng, m):
    n = _pick(rng, _all_nodes(m.graph))
    name = _pick(rng, ["axis", "keepdims", "perm", "to", "foo", "select_last_index", "noop_with_empty_axes"])
    if any(a.name == name for a in n.attribute):
        return "add_attribute:exists"
    value = _pick(rng, _INTS) if rng.random() < 0.7 else [int(_pick(rng, _INTS)) for _ in range(2)]
    n.attribute.append(h.make_attribute(name, value))
    return f"add_attribute:{n.op_type}.{name}"


def _mut_type(rng, m):
    vis = list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)
    vi = _pick(rng, vis)
    if vi.type.HasField("tensor_type"):
        vi.type.tensor_type.elem_type = _pick(rng, _TYPES)
    return f"type:{vi.name}"


def _mut_dims(rng, m):
    vi = _pick(rng, list(m.graph.input) + list(m.graph.output))
    if not vi.type.HasField("tensor_type"):
        return "dims:none"
    shape = vi.type.tensor_type.shape
    if len(shape.dim) and rng.random() < 0.7:
        d = shape.dim[int(rng.integers(len(shape.dim)))]
        d.dim_value = _pick(rng, [0, 1, 2, 3, 5, 2**20])
    elif rng.random() < 0.5:
        shape.dim.add().dim_value = 1
    else:
        vi.type.tensor_type.ClearField("shape")
    return f"dims:{vi.name}"


def _mut_rewire(rng, m):
    nodes = [n for n in _all_nodes(m.graph) if n.input]
    n = _pick(rng, nodes)
    i = int(rng.integers(len(n.input)))
    n.input[i] = _pick(rng, _names(m.graph) + ["", "nowhere"])
    return f"rewire:{n.op_type}.{i}"


def _mut_op(rng, m):
    n = _pick(rng, _all_nodes(m.graph))
    old, n.op_type = n.op_type, _pick(rng, _OPS)
    return f"op:{old}->{n.op_type}"


def _mut_nodes(rng, m):
    g = m.graph
    i = int(rng.integers(len(g.node)))
    what = _pick(rng, ["drop", "duplicate", "swap"])
    if what == "drop":
        del g.node[i]
    elif what == "duplicate":
        g.node.append(g.node[i])
    elif len(g.node) > 1:
        j = int(rng.integers(len(g.node)))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(g.node[i])
        b.CopyFrom(g.node[j])
        g.node[i].CopyFrom(b)
        g.node[j].CopyFrom(a)
    return f"nodes:{what}"


def _mut_initializer(rng, m):
    if not m.graph.initializer:
        return "initializer:none"
    t = _pick(rng, list(m.graph.initializer))
    what = _pick(rng, ["dims", "type", "truncate", "huge", "external"])
    if what == "dims" and len(t.dims):
        t.dims[int(rng.integers(len(t.dims)))] = _pick(rng, [0, 1, 2, 3, 7])
    elif what == "type":
        t.data_type = _pick(rng, _TYPES)
    elif what == "truncate" and t.raw_data:
        t.raw_data = t.raw_data[:int(rng.integers(len(t.raw_data)))]
    elif what == "huge":
        del t.dims[:]
        t.dims.extend([2**20, 2**20])
    elif what == "external":
        t.data_location = T.EXTERNAL
        t.external_data.add(key="location", value=_pick(rng, ["w.bin", "../../etc/passwd", "/etc/passwd", "x\x00"]))
        t.external_data.add(key="offset", value=_pick(rng, ["0", "abc", "-5", "1e3"]))
    return f"initializer:{t.name}.{what}"


def _mut_opset(rng, m):
    m.opset_import[0].version = _pick(rng, _OPSETS)
    return f"opset:{m.opset_import[0].version}"


def _mut_outputs(rng, m):
    g = m.graph
    what = _pick(rng, ["remove", "duplicate", "rename", "dup_input"])
    if what == "remove" and g.output:
        del g.output[int(rng.integers(len(g.output)))]
    elif what == "duplicate" and g.output:
        g.output.append(g.output[0])
    elif what == "rename" and g.output:
        g.output[0].name = _pick(rng, _names(g) + ["nowhere"])
    elif what == "dup_input" and g.input:
        g.input.append(g.input[0])
    return f"outputs:{what}"


_STRUCTURAL = [_mut_attribute, _mut_attribute, _mut_add_attribute, _mut_type, _mut_dims, _mut_rewire, _mut_op,
               _mut_nodes, _mut_initializer, _mut_opset, _mut_outputs]


def _mutate_bytes(rng, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    what = _pick(rng, ["flip", "flip", "truncate", "insert", "splice"])
    if what == "flip":
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
    elif what == "truncate":
        b = b[:int(rng.integers(1, len(b)))]
    elif what == "insert":
        at = int(rng.integers(len(b)))
        b[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8))
    else:
        a, c = sorted(int(x) for x in rng.integers(0, len(b), 2))
        at = int(rng.integers(len(b)))
        b[at:at] = b[a:c]
    return bytes(b), f"bytes:{what}"


# --- feeds ----------------------------------------------------------------------------------
_TEXTS = ["1.5", "abc", "-3", "1e3", "", " 7", "0x10", "inf", "nan", "2.5e-3", "\u00e9t\u00e9", "12abc"]


def _feed_for(rng, vi) -> object:
    tt = vi.type.tensor_type
    shape = []
    for d in tt.shape.dim:
        shape.append(d.dim_value if d.HasField("dim_value") else 2)
    if int(np.prod(shape)) > 100_000 or any(s < 0 for s in shape):
        return None
    try:
        dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
    except Exception:  # noqa: BLE001 - an unknown type: no feed can be built
        return None
    if dt == object:
        flat = [_pick(rng, _TEXTS) for _ in range(int(np.prod(shape)))]
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if dt.kind in "iu":
        return rng.integers(0, 4, shape).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def make_feeds(rng, model_bytes: bytes, base: onnx.ModelProto) -> dict:
    """Feeds built from the mutant's declared inputs (the base model's where it cannot be read)."""
    m = onnx.ModelProto()
    try:
        m.ParseFromString(model_bytes)
    except Exception:  # noqa: BLE001
        m = base
    inits = {t.name for t in m.graph.initializer}
    feeds = {}
    for vi in m.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type") or isinstance(vi.name, bytes):
            continue
        v = _feed_for(rng, vi)
        if v is not None:
            feeds[vi.name] = v
    return feeds


@dataclasses.dataclass
class Case:
    seed: int
    base: str
    mutations: list
    model: bytes
    feeds: dict


_SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -1e38, 1e-45, 65504.0, 3.0]


def _mutate_feeds(rng, feeds: dict, model: onnx.ModelProto) -> str:
    """Values onnxruntime and ortgpu must agree on: special floats, extreme integers, other
    batch sizes for free dims (0 included), or a feed of the wrong type or rank."""
    if not feeds:
        return "feeds:none"
    name = _pick(rng, sorted(feeds))
    v = feeds[name]
    what = _pick(rng, ["special", "special", "extreme_int", "batch", "wrong_dtype", "wrong_rank", "drop"])
    if what == "special" and v.dtype.kind == "f" and v.size:
        flat = v.reshape(-1)
        for _ in range(int(rng.integers(1, 4))):
            flat[int(rng.integers(flat.size))] = _pick(rng, _SPECIAL)
    elif what == "extreme_int" and v.dtype.kind in "iu" and v.size:
        info = np.iinfo(v.dtype)
        v.reshape(-1)[int(rng.integers(v.size))] = _pick(rng, [info.min, info.max, 0, -1 if info.min < 0 else 1])
    elif what == "batch":
        vi = next((i for i in model.graph.input if i.name == name), None)
        dims = vi.type.tensor_type.shape.dim if vi is not None else []
        shape = [(int(rng.integers(0, 4)) if not d.HasField("dim_value") else d.dim_value) for d in dims]
        proto = {"shape": shape}
        feeds[name] = _feed_for(rng, _with_shape(vi, proto["shape"])) if vi is not None else v
    elif what == "wrong_dtype":
        feeds[name] = v.astype(np.float64) if v.dtype != np.float64 and v.dtype != object else v
    elif what == "wrong_rank":
        feeds[name] = v.reshape((1,) + v.shape)
    elif what == "drop":
        del feeds[name]
    return f"feeds:{what}:{name}"


def _with_shape(vi, shape):
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(vi)
    del copy.type.tensor_type.shape.dim[:]
    for d in shape:
        copy.type.tensor_type.shape.dim.add().dim_value = d
    return copy


def make_case(seed: int) -> Case:
    """The case of `seed`: a base model and one of three kinds of change, the feeds only (30%),
    one or two structural mutations (45%) or one or two byte-level ones (25%)."""
    rng = np.random.default_rng(seed)
    name = _pick(rng, sorted(BASES))
    base = base_model(name)
    m = onnx.ModelProto()
    m.CopyFrom(base)
    done = []
    kind = rng.random()
    if kind < 0.3:
        data = m.SerializeToString()
        feeds = make_feeds(rng, data, base)
        for _ in range(int(rng.integers(1, 3))):
            done.append(_mutate_feeds(rng, feeds, m))
        return Case(seed, name, done, data, {k: v for k, v in feeds.items() if v is not None})
    if kind < 0.75:
        for _ in range(int(rng.integers(1, 3))):
            done.append(_pick(rng, _STRUCTURAL)(rng, m))
        data = m.SerializeToString()
    else:
        data = m.SerializeToString()
        for _ in range(int(rng.integers(1, 3))):
            data, what = _mutate_bytes(rng, data)
            done.append(what)
    return Case(seed, name, done, data, make_feeds(rng, data, base))


# --- running one case -------------------------------------------------------------------------
class CaseTimeout(BaseException):
    """The per-case time limit (SIGALRM).  A BaseException, so that no runtime's ``except
    Exception`` turns a hang into an ordinary error."""


def _outcome(mod, model: bytes, feeds: dict) -> dict:
    """{"stage": "ok"|"load"|"run", "error": class name, "message", "outputs"}."""
    feeds = {k: v.copy() for k, v in feeds.items()}
    try:
        sess = mod.InferenceSession(model, providers=["CPUExecutionProvider"])
    except CaseTimeout:
        raise
    except BaseException as e:  # noqa: BLE001 - the outcome
        return {"stage": "load", "error": type(e).__name__, "module": type(e).__module__, "message": str(e)[:300]}
    try:
        out = sess.run(None, feeds)
    except CaseTimeout:
        raise
    except BaseException as e:  # noqa: BLE001
        return {"stage": "run", "error": type(e).__name__, "module": type(e).__module__, "message": str(e)[:300]}
    return {"stage": "ok", "outputs": out}


def _typed(res: dict, ref: dict | None) -> bool:
    if res["stage"] == "ok":
        return True
    if res["module"].startswith("ortgpu") or res["error"] == "MemoryError":
        return True
    return ref is not None and ref["stage"] != "ok" and ref["error"] == res["error"]  # the Python layer's


def _same_outputs(a: list, b: list) -> str | None:
    if len(a) != len(b):
        return f"{len(a)} outputs vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype or x.shape != y.shape:
            return f"output {i}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
        if x.dtype == object:
            if x.tolist() != y.tolist():
                return f"output {i}: {x.ravel()[:4].tolist()} vs {y.ravel()[:4].tolist()}"
        elif x.dtype.kind in "fc":
            if not np.allclose(x.astype(np.float64), y.astype(np.float64), rtol=1e-3, atol=1e-5, equal_nan=True):
                return f"output {i}: values differ ({x.ravel()[:4]} vs {y.ravel()[:4]})"
        elif not np.array_equal(x, y):
            return f"output {i}: values differ ({x.ravel()[:4]} vs {y.ravel()[:4]})"
    return None


def _has_nan(feeds: dict) -> bool:
    return any(v.dtype.kind == "f" and np.isnan(v).any() for v in feeds.values())


def judge(ref: dict | None, got: dict, feeds: dict | None = None) -> str:
    """The category of a case: ok, untyped, differs, ort_refuses_ortgpu_runs, ortgpu_refuses_ort_runs,
    ortgpu_fails_ort_runs (a run error where onnxruntime ran), ort_fails_ortgpu_runs, and
    differs_on_nan: outputs differ for feeds holding NaN (onnxruntime's reductions and arg-reductions
    over NaN depend on element order: its ReduceMax of [1, nan, 2, 3] is 2), reported, not failed."""
    if not _typed(got, ref):
        return "untyped"
    if ref is None:
        return "ok"
    if ref["stage"] == "ok" and got["stage"] == "ok":
        if _same_outputs(ref["outputs"], got["outputs"]) is None:
            return "ok"
        return "differs_on_nan" if feeds and _has_nan(feeds) else "differs"
    if ref["stage"] == "load" and got["stage"] == "ok":
        return "ort_refuses_ortgpu_runs"
    if ref["stage"] == "ok" and got["stage"] == "load":
        return "ortgpu_refuses_ort_runs"
    if ref["stage"] == "ok" and got["stage"] == "run":
        return "ortgpu_fails_ort_runs"
    if ref["stage"] == "run" and got["stage"] == "ok":
        return "ort_fails_ortgpu_runs"
    return "ok"  # both refused or both failed


def run_case(case: Case, skip_ort: bool = False, emit=None) -> dict:
    """Run one case in this process: onnxruntime first (unless skip_ort), then ortgpu."""
    import onnxruntime  # noqa: PLC0415

    import ortgpu  # noqa: PLC0415
    onnxruntime.set_default_logger_severity(4)
    emit = emit or (lambda *_: None)
    emit("ort")
    ref = None if skip_ort else _outcome(onnxruntime, case.model, case.feeds)
    emit("ortgpu")
    _selftest_fault(case.seed)
    got = _outcome(ortgpu, case.model, case.feeds)
    verdict = judge(ref, got, case.feeds)
    detail = ""
    if verdict.startswith("differs"):
        detail = _same_outputs(ref["outputs"], got["outputs"])
    elif verdict != "ok":
        detail = f"ort: {_brief(ref)} | ortgpu: {_brief(got)}"
    return {"seed": case.seed, "base": case.base, "mutations": case.mutations, "verdict": verdict, "detail": detail,
            "stages": f"{ref['stage'] if ref else '-'}/{got['stage']}"}


def _selftest_fault(seed: int) -> None:
    """The harness's own test (tests/test_fuzz.py) makes a worker crash or hang on one seed."""
    fault = os.environ.get("ORTGPU_FUZZ_SELFTEST", "")
    if fault == f"crash:{seed}":
        os.abort()
    if fault == f"hang:{seed}":
        time.sleep(3600)


def _brief(res: dict | None) -> str:
    if res is None:
        return "not run"
    if res["stage"] == "ok":
        return "ran"
    return f"{res['stage']} {res['error']}: {res['message'][:160]}"


# --- the worker and its driver ------------------------------------------------------------------
def _worker(limit_bytes: int, case_seconds: int) -> None:
    """Read [[seed, skip_ort], ...] from stdin; per case print progress lines and a result line."""
    import resource  # noqa: PLC0415
    import signal  # noqa: PLC0415
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    jobs = json.loads(sys.stdin.readline())
    import onnxruntime  # noqa: F401, PLC0415 - imported before any case's time limit starts

    import ortgpu  # noqa: F401, PLC0415
    out = os.fdopen(os.dup(1), "w")  # the protocol's own copy of stdout; prints go to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    state = {"phase": None}

    def emit(phase, seed):
        state["phase"] = phase
        out.write(json.dumps({"seed": seed, "phase": phase}) + "\n")
        out.flush()

    def alarm(*_):
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, alarm)
    for seed, skip_ort in jobs:
        signal.alarm(case_seconds)
        try:
            res = run_case(make_case(seed), bool(skip_ort), lambda p, s=seed: emit(p, s))
        except CaseTimeout:
            if state["phase"] == "ort":  # onnxruntime's hang: ortgpu gets the case alone
                signal.alarm(case_seconds)
                try:
                    res = run_case(make_case(seed), True, lambda p, s=seed: emit(p, s))
                    res["ort"] = "hang"
                except CaseTimeout:
                    res = {"seed": seed, "verdict": "hang_both", "detail": "both runtimes past the time limit"}
            elif skip_ort:  # onnxruntime hung or crashed on this case in an earlier worker
                res = {"seed": seed, "verdict": "hang_both",
                       "detail": f"ortgpu past the time limit; onnxruntime: {skip_ort} (e.g. an endless Loop)"}
            else:
                res = {"seed": seed, "verdict": "hang", "detail": "ortgpu past the case time limit (SIGALRM)"}
        finally:
            signal.alarm(0)
        out.write(json.dumps({"seed": seed, "result": res}, default=str) + "\n")
        out.flush()


def run_cases(seeds, case_seconds: int = 20, memory_bytes: int = 6 << 30, log=None) -> list[dict]:
    """Run the cases in worker subprocesses; a worker that dies or goes silent is replaced and the
    case it was on recorded as a crash or hang (of onnxruntime if it was in onnxruntime's phase,
    in which case the case is run again for ortgpu alone)."""
    pending = [[int(s), False] for s in seeds]
    results: dict[int, dict] = {}
    here = os.path.abspath(__file__)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), os.environ.get("PYTHONPATH", "")]))
    while pending:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([sys.executable, here, "--worker", str(memory_bytes), str(case_seconds)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
            proc.stdin.write((json.dumps(pending) + "\n").encode())
            proc.stdin.flush()
            current, phase = None, None
            ended = None
            buf = b""
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], case_seconds + 15)
                if not ready:
                    ended = "hang"
                    proc.kill()
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    ended = "crash"
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    msg = json.loads(line)
                    current, phase = msg["seed"], msg.get("phase", phase)
                    if "result" in msg:
                        results[current] = msg["result"]
                        if log:
                            log(msg["result"])
            code = proc.wait()
            err.seek(0)
            tail = err.read()[-400:].decode("utf-8", "replace")
        done = set(results)
        rest = [job for job in pending if job[0] not in done]
        if not rest:
            break
        if current is None or current in done:  # died before starting a case
            current, phase = rest[0][0], "ort" if not rest[0][1] else "ortgpu"
        why = f"worker {ended} (exit {code}) in the {phase} phase: {tail.strip()[-200:]}"
        if phase == "ort":  # onnxruntime's own crash or hang: run the case for ortgpu alone
            results_note = {"ort_" + (ended or "crash"): why}
            for job in rest:
                if job[0] == current:
                    job[1] = ended or "crash"  # onnxruntime's fault: ortgpu alone next
            pending = rest
            if log:
                log({"seed": current, "verdict": "ort_" + (ended or "crash"), "detail": results_note})
            results.setdefault(-1 - current, {"seed": current, "verdict": "ort_" + (ended or "crash"),
                                              "detail": why})
            continue
        job = next((j for j in rest if j[0] == current), None)
        verdict = ended or "crash"
        if verdict == "hang" and job is not None and job[1]:
            verdict = "hang_both"  # onnxruntime hung or crashed on this case too
        results[current] = {"seed": current, "verdict": verdict, "detail": why}
        if log:
            log(results[current])
        pending = [job for job in rest if job[0] != current]
    return [results[s] for s in sorted(k for k in results if k >= 0)] + \
        [results[k] for k in sorted(results) if k < 0]


FAILURES = ("crash", "hang", "untyped", "differs")


def summarize(results: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return counts


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    _worker(int(sys.argv[2]), int(sys.argv[3]))
