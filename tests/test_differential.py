"""Randomized differential tests: ortgpu's CPU provider against onnxruntime's on the hot ops.

Each op has a generator that draws one single-node model (shapes, attributes, dtypes, opset)
from a seeded ``numpy.random.default_rng``; configuration ``i`` of op ``Op`` uses the seed
``[crc32(Op), i]``, so a failure message names everything needed to replay it
(``_draw("Op", i)``).  A configuration onnxruntime refuses (load or run) is skipped and not
counted; every op must run at least its stated minimum so the test cannot pass vacuously.
Float outputs are compared with ``assert_allclose`` at the case's tolerances, everything else
exactly.  Configurations where onnxruntime departs from the ONNX spec are excluded where they
are drawn, with the reason beside them.  ``ORTGPU_DIFF_SCALE=10`` draws ten times as many
configurations per op (the minimum scales too) for a deeper local search.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import zlib
from fractions import Fraction

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper, numpy_helper

import ortgpu
from support.harness import compare, draw, pick, rnd

onnxruntime.set_default_logger_severity(3)
CPU = ["CPUExecutionProvider"]
IR_VERSION = 10
SCALE = int(os.environ.get("ORTGPU_DIFF_SCALE", "1"))

F32, F16, F64, I64, I32 = np.float32, np.float16, np.float64, np.int64, np.int32
TOL = {np.dtype(F32): (1e-4, 1e-5), np.dtype(F16): (1e-2, 1e-2), np.dtype(F64): (1e-10, 1e-12)}


@dataclasses.dataclass
class Case:
    """One single-node model: feeds are graph inputs, consts become initializers."""
    node: onnx.NodeProto
    feeds: dict
    opset: int
    consts: dict = dataclasses.field(default_factory=dict)
    rtol: float | None = None
    atol: float | None = None
    note: str = ""

    def __post_init__(self):  # generators may hand 0-d values over as NumPy scalars
        self.feeds = {k: np.asarray(v) for k, v in self.feeds.items()}
        self.consts = {k: np.asarray(v) for k, v in self.consts.items()}

    def describe(self) -> str:
        attrs = {a.name: helper.get_attribute_value(a) for a in self.node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        shapes = {k: (str(v.dtype), v.shape) for k, v in self.feeds.items()}
        consts = {k: v.tolist() if v.size <= 12 else (str(v.dtype), v.shape) for k, v in self.consts.items()}
        return (f"opset {self.opset} inputs {list(self.node.input)} attrs {attrs} feeds {shapes} "
                f"consts {consts} {self.note}")

    def model(self) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                  for k, v in self.feeds.items()]
        inits = [numpy_helper.from_array(v, k) for k, v in self.consts.items()]
        outputs = [helper.make_empty_tensor_value_info(o) for o in self.node.output if o]
        graph = helper.make_graph([self.node], "diff", inputs, outputs, initializer=inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = IR_VERSION
        inferred = onnx.shape_inference.infer_shapes(m)
        elem = {o.name: o.type.tensor_type.elem_type for o in inferred.graph.output}
        first = inputs[0].type.tensor_type.elem_type
        for o in m.graph.output:  # element type only: both runtimes compute the shapes
            o.type.tensor_type.elem_type = elem.get(o.name) or first
        return m


GENERATORS: dict[str, tuple] = {}


def op_cases(*ops, count=12, minimum=8):
    """Register a generator ``gen(rng, op) -> Case | None`` for ``ops`` (None: draw again)."""
    def register(gen):
        for op in ops:
            GENERATORS[op] = (gen, count, minimum)
        return gen
    return register


def _draw(op: str, i: int) -> Case:
    gen = GENERATORS[op][0]
    return draw(lambda rng: gen(rng, op), op, i)


def _ort_run(case: Case):
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    data = case.model().SerializeToString()
    try:
        sess = onnxruntime.InferenceSession(data, so, providers=CPU)
        return data, sess.run(None, case.feeds)
    except Exception:  # onnxruntime refuses this configuration: not counted
        return data, None


# --------------------------------------------------------------------------- helpers

def ints(rng, lo, hi, n):
    """n integers in [lo, hi] as a Python list."""
    return [int(v) for v in rng.integers(lo, hi + 1, size=n)]


def float_dtype(rng, p16=0.2):
    return F16 if rng.random() < p16 else F32


def node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, **{k: v for k, v in attrs.items() if v is not None})


def bcast_shape(rng, shape):
    """A shape that broadcasts to ``shape``: a suffix of it with some dims set to 1."""
    k = int(rng.integers(0, len(shape) + 1))
    return tuple(1 if rng.random() < 0.3 else d for d in shape[len(shape) - k:])


# --------------------------------------------------------------------------- convolution

@op_cases("Conv", count=30, minimum=22)
def gen_conv(rng, op):
    d = int(rng.integers(1, 4))
    kind = pick(rng, ["plain", "grouped", "depthwise"])
    group = 1 if kind == "plain" else (2 if kind == "grouped" else int(rng.integers(2, 5)))
    cpg = 1 if kind == "depthwise" else int(rng.integers(1, 4))
    C, M = group * cpg, group * int(rng.integers(1, 3))
    k = ints(rng, 1, 3 if d < 3 else 2, d)
    dil = ints(rng, 1, 2, d) if rng.random() < 0.4 else [1] * d
    strides = ints(rng, 1, 3, d)
    eff = [dl * (kk - 1) + 1 for dl, kk in zip(dil, k)]
    size = [e + int(rng.integers(0, {1: 9, 2: 6, 3: 3}[d])) for e in eff]
    auto_pad = pick(rng, ["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
    pads = ints(rng, 0, 2, 2 * d) if auto_pad == "NOTSET" else None
    dt = float_dtype(rng)
    feeds = {"X": rnd(rng, [int(rng.integers(1, 3)), C] + size, dt),
             "W": rnd(rng, [M, cpg] + k, dt)}
    if rng.random() < 0.6:
        feeds["B"] = rnd(rng, [M], dt)
    n = node("Conv", list(feeds), ["Y"], group=group, kernel_shape=k if rng.random() < 0.5 else None,
             strides=strides, dilations=dil, pads=pads, auto_pad=auto_pad)
    return Case(n, feeds, int(rng.integers(17, 22)), atol=1e-4 if dt == F32 else 2e-2)


@op_cases("ConvTranspose", count=30, minimum=22)
def gen_conv_transpose(rng, op):
    d = int(rng.integers(1, 4))
    group = pick(rng, [1, 1, 2, 3])
    C, Mg = group * int(rng.integers(1, 3)), int(rng.integers(1, 3))
    k = ints(rng, 1, 3, d)
    strides = ints(rng, 1, 3, d)
    dil = ints(rng, 1, 2, d) if rng.random() < 0.3 else [1] * d
    size = ints(rng, 2, {1: 7, 2: 5, 3: 3}[d], d)
    attrs = dict(group=group, strides=strides, dilations=dil)
    mode = pick(rng, ["pads", "pads", "output_shape", "auto_pad"])
    if mode == "pads":
        attrs["pads"] = [int(rng.integers(0, kk)) for kk in k * 2]
        attrs["output_padding"] = [int(rng.integers(0, s)) for s in strides]
    elif mode == "output_shape":
        full = [s * (n - 1) + dl * (kk - 1) + 1 for s, n, dl, kk in zip(strides, size, dil, k)]
        # Only shapes up to the full result: for a larger output_shape the spec's total_padding is
        # negative and moves the result (start pad total - total/2); onnxruntime clamps the
        # padding to 0 and appends the extra at the end instead.
        attrs["output_shape"] = [max(1, f - int(rng.integers(0, 3))) for f in full]
    else:
        attrs["auto_pad"] = pick(rng, ["SAME_UPPER", "SAME_LOWER", "VALID"])
        # The spec makes a SAME output stride * input, padding negatively when the dilated kernel
        # is shorter than the stride; onnxruntime clamps that padding to 0 and returns less.
        if attrs["auto_pad"] != "VALID" and any(dl * (kk - 1) + 1 < s for dl, kk, s in zip(dil, k, strides)):
            return None
    dt = float_dtype(rng, 0.1)
    feeds = {"X": rnd(rng, [int(rng.integers(1, 3)), C] + size, dt),
             "W": rnd(rng, [C, Mg] + k, dt)}
    if rng.random() < 0.5:
        feeds["B"] = rnd(rng, [group * Mg], dt)
    return Case(node("ConvTranspose", list(feeds), ["Y"], **attrs), feeds, int(rng.integers(17, 22)),
                atol=1e-4 if dt == F32 else 2e-2)


# --------------------------------------------------------------------------- pooling

@op_cases("MaxPool", "AveragePool", count=30, minimum=22)
def gen_pool(rng, op):
    d = int(rng.integers(1, 4))
    k = ints(rng, 1, 3, d)
    strides = ints(rng, 1, 3, d)
    opset = int(rng.integers(17, 22))
    dil = [1] * d
    if (op == "MaxPool" or opset >= 19) and rng.random() < 0.4:
        dil = ints(rng, 1, 2, d)
    eff = [dl * (kk - 1) + 1 for dl, kk in zip(dil, k)]
    size = [e + int(rng.integers(0, {1: 8, 2: 5, 3: 3}[d])) for e in eff]
    auto_pad = pick(rng, ["NOTSET"] * 4 + ["SAME_UPPER", "SAME_LOWER", "VALID"])
    pads = [int(rng.integers(0, kk)) for kk in k * 2] if auto_pad == "NOTSET" else None
    if auto_pad.startswith("SAME") and dil != [1] * d:
        # onnxruntime sizes SAME padding with the undilated kernel, not the dilated one as the
        # spec's pad_shape formula does, so its windows sit in the wrong place
        return None
    if auto_pad.startswith("SAME") and any((-(-n // s) - 1) * s + kk < n for n, s, kk in zip(size, strides, k)):
        # SAME padding would be negative (stride longer than the kernel): onnxruntime rejects
        # that for float32 and shifts the windows by the negative pad for float16, while
        # ortgpu clamps it to 0 as onnxruntime's Conv does
        return None
    attrs = dict(kernel_shape=k, strides=strides, pads=pads, auto_pad=auto_pad,
                 ceil_mode=int(rng.integers(0, 2)))
    if dil != [1] * d:
        attrs["dilations"] = dil
    outputs = ["Y"]
    if op == "AveragePool":
        attrs["count_include_pad"] = int(rng.integers(0, 2))
    elif rng.random() < 0.4:
        outputs.append("Indices")
        attrs["storage_order"] = int(rng.integers(0, 2)) if d == 2 else None
    dt = float_dtype(rng, 0.15)
    feeds = {"X": rnd(rng, [int(rng.integers(1, 3)), int(rng.integers(1, 4))] + size, dt)}
    return Case(node(op, ["X"], outputs, **attrs), feeds, opset)


@op_cases("GlobalAveragePool", "GlobalMaxPool", count=10, minimum=9)
def gen_global_pool(rng, op):
    d = int(rng.integers(1, 4))
    dt = float_dtype(rng)
    feeds = {"X": rnd(rng, ints(rng, 1, 3, 2) + ints(rng, 1, 6, d), dt)}
    return Case(node(op, ["X"], ["Y"]), feeds, int(rng.integers(17, 22)))


# --------------------------------------------------------------------------- resize

@op_cases("Resize", count=40, minimum=30)
def gen_resize(rng, op):
    opset = int(rng.integers(18, 22))
    mode = pick(rng, ["nearest", "linear", "cubic"])
    coord_modes = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_crop_and_resize"]
    if opset >= 19:
        coord_modes.append("half_pixel_symmetric")
    ctm = pick(rng, coord_modes)
    rank = pick(rng, [4, 4, 4, 2, 3] if mode == "nearest" else [4, 4, 2])
    shape = ints(rng, 1, 2, rank - 2) + ints(rng, 2, 7, 2) if rank >= 2 else ints(rng, 2, 7, rank)
    shape = shape[-rank:]
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
    if mode == "nearest":
        attrs["nearest_mode"] = pick(rng, ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
    if mode == "cubic":
        attrs["cubic_coeff_a"] = pick(rng, [-0.75, -0.5])
        attrs["exclude_outside"] = int(rng.integers(0, 2))
    use_axes = rank == 4 and rng.random() < 0.3
    spatial = 2 if rank >= 2 else rank
    consts = {}
    if ctm == "tf_crop_and_resize":
        lo = rng.uniform(0.0, 0.4, size=spatial)
        hi = rng.uniform(0.6, 1.2, size=spatial)
        attrs["extrapolation_value"] = float(rng.choice([0.0, -1.5]))
        if use_axes:
            roi = list(lo) + list(hi)
        else:
            roi = [0.0] * (rank - spatial) + list(lo) + [1.0] * (rank - spatial) + list(hi)
        consts["roi"] = np.array(roi, F32)
    scales_mode = rng.random() < 0.55
    kar = None
    if scales_mode:
        s = [float(pick(rng, [0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0])) for _ in range(spatial)]
        consts["scales"] = np.array(s if use_axes else [1.0] * (rank - spatial) + s, F32)
        ratios = [Fraction(float(np.float32(v))) for v in s]
        outs = [int(np.floor(n * np.float32(v))) for n, v in zip(shape[-spatial:], s)]
    else:
        sz = ints(rng, 1, 12, spatial)
        consts["sizes"] = np.array(sz if use_axes else shape[:rank - spatial] + sz, I64)
        ratios = [Fraction(o, n) for o, n in zip(sz, shape[-spatial:])]
        outs = sz
        if rng.random() < 0.4:
            kar = attrs["keep_aspect_ratio_policy"] = pick(rng, ["not_larger", "not_smaller"])
            if not use_axes:
                consts["sizes"][:rank - spatial] = shape[:rank - spatial]
                ratios += [Fraction(1)] * (rank - spatial)
            r = min(ratios) if kar == "not_larger" else max(ratios)
            ratios = [r] * spatial
            outs = [int(r * n + Fraction(1, 2)) for n in shape[-spatial:]]
    if use_axes:
        attrs["axes"] = pick(rng, [[2, 3], [-2, -1]])
        if kar and attrs["axes"][0] < 0:
            # onnxruntime ignores keep_aspect_ratio_policy's sizes when axes are negative and
            # returns the input unchanged (onnx shape inference agrees with the spec here)
            return None
    for n, r, o in zip(shape[-spatial:], ratios, outs):
        if ctm == "align_corners" and r * n != o and o > 1:
            # onnxruntime divides by the integer output length; the onnx reference (and the
            # backend case test_resize_downsample_scales_linear_align_corners) by the
            # fractional target length in * scale, which ortgpu follows
            return None
        if o == n and (r != 1 or ctm == "tf_crop_and_resize"):
            # onnxruntime passes an axis whose length does not change through untouched, even
            # when its scale is not 1 (3 * 1.25 -> 3) or a tf_crop_and_resize roi crops it; the
            # spec still maps the coordinates through the scale and the roi
            return None
        if mode == "nearest" and ctm != "tf_crop_and_resize" and _nearest_tie_is_ambiguous(
                ctm, attrs["nearest_mode"], n, o, r):
            return None
    if mode != "nearest" and rng.random() < 0.3:
        attrs["antialias"] = 1
    names = ["X", "roi" if "roi" in consts else "", "scales" if scales_mode else ""]
    if not scales_mode:
        names.append("sizes")
    dt = float_dtype(rng, 0.1)
    return Case(node("Resize", names, ["Y"], **attrs), {"X": rnd(rng, shape, dt)}, opset, consts)


def _nearest_tie_is_ambiguous(ctm, nearest_mode, n, o, r):
    """Does an output position map exactly onto a rounding boundary that float32 may miss?

    The source coordinate is computed in float32, in an order each runtime picks.  When the exact
    coordinate is a tie (x.5 for the round modes, an integer for floor / ceil) and the scale is
    not exactly a float32, or the formula takes several rounded steps (half_pixel_symmetric,
    align_corners), an ulp decides the side; neither runtime's answer is wrong then.
    """
    inexact = Fraction(float(np.float32(r))) != r or ctm in ("half_pixel_symmetric", "align_corners")
    if not inexact:
        return False
    for y in range(o):
        if ctm == "asymmetric":
            exact = y / r
        elif ctm == "align_corners":
            exact = Fraction(y * (n - 1), o - 1) if o > 1 else Fraction(0)
        else:  # the half-pixel family: (y + 1/2) / scale - 1/2, plus a centring shift
            exact = (y + Fraction(1, 2)) / r - Fraction(1, 2)
            if ctm == "half_pixel_symmetric":
                exact += Fraction(n, 2) * (1 - Fraction(o) / (r * n))
        if exact.denominator == (2 if nearest_mode.startswith("round") else 1):
            return True
    return False


# --------------------------------------------------------------------------- linear algebra

@op_cases("Gemm", count=20, minimum=17)
def gen_gemm(rng, op):
    M, K, N = ints(rng, 1, 9, 3)
    tA, tB = ints(rng, 0, 1, 2)
    dt = float_dtype(rng, 0.15)
    feeds = {"A": rnd(rng, [K, M] if tA else [M, K], dt), "B": rnd(rng, [K, N] if tB == 0 else [N, K], dt)}
    c = pick(rng, [None, (M, N), (N,), (1, N), (M, 1), (1,), ()])
    if c is not None:
        feeds["C"] = rnd(rng, c, dt)
    attrs = dict(transA=tA, transB=tB, alpha=pick(rng, [None, 1.0, 0.5, -2.0, 0.0]),
                 beta=pick(rng, [None, 1.0, 0.25, 0.0]) if c is not None else None)
    return Case(node("Gemm", list(feeds), ["Y"], **attrs), feeds, int(rng.integers(17, 22)))


@op_cases("MatMul", count=20, minimum=17)
def gen_matmul(rng, op):
    M, K, N = ints(rng, 1, 7, 3)
    batch = ints(rng, 1, 3, int(rng.integers(0, 3)))
    a = batch + [M, K] if rng.random() < 0.85 else [K]
    b = list(bcast_shape(rng, batch)) + [K, N] if rng.random() < 0.85 else [K]
    if rng.random() < 0.5:
        a, b = [1 if (x > 1 and rng.random() < 0.3) else x for x in a[:-2]] + a[-2:] if len(a) > 2 else a, b
    dt = pick(rng, [F32, F32, F32, F16, I64])
    feeds = {"A": rnd(rng, a, dt), "B": rnd(rng, b, dt)}
    return Case(node("MatMul", ["A", "B"], ["Y"]), feeds, int(rng.integers(17, 22)))


@op_cases("Einsum", count=20, minimum=17)
def gen_einsum(rng, op):
    eq, shapes = pick(rng, [
        ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
        ("ii->i", [(4, 4)]), ("ij->ji", [(3, 5)]), ("i,i->", [(6,), (6,)]), ("ij->", [(3, 4)]),
        ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]), ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 3)]),
        ("ij,j->i", [(3, 4), (4,)]), ("i,j->ij", [(3,), (4,)]), ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
        ("ijk->kji", [(2, 3, 4)]), ("ij,ij->ij", [(3, 4), (3, 4)]), ("bij->bj", [(2, 3, 4)]),
        ("ij,kj->ik", [(3, 4), (5, 4)])])
    dt = pick(rng, [F32, F32, F64, I64])
    feeds = {f"x{i}": rnd(rng, s, dt) for i, s in enumerate(shapes)}
    return Case(node("Einsum", list(feeds), ["Y"], equation=eq), feeds, int(rng.integers(17, 22)))


# --------------------------------------------------------------------------- normalization

@op_cases("Softmax", "LogSoftmax", count=20, minimum=17)
def gen_softmax(rng, op):
    shape = ints(rng, 1, 6, int(rng.integers(1, 5)))
    axis = int(rng.integers(-len(shape), len(shape)))
    dt = float_dtype(rng, 0.2)
    return Case(node(op, ["X"], ["Y"], axis=pick(rng, [axis, None])), {"X": rnd(rng, shape, dt, 3.0)},
                int(rng.integers(17, 22)))


@op_cases("LayerNormalization", count=20, minimum=17)
def gen_layer_norm(rng, op):
    shape = ints(rng, 1, 6, int(rng.integers(1, 5)))
    axis = int(rng.integers(-len(shape), len(shape)))
    dt = float_dtype(rng, 0.2)
    norm = shape[axis:]
    feeds = {"X": rnd(rng, shape, dt, 2.0), "Scale": rnd(rng, norm, dt)}
    if rng.random() < 0.5:
        feeds["B"] = rnd(rng, norm, dt)
    outputs = ["Y"] + (["Mean", "InvStdDev"] if rng.random() < 0.4 else [])
    n = node(op, list(feeds), outputs, axis=axis, epsilon=pick(rng, [None, 1e-3]))
    return Case(n, feeds, int(rng.integers(17, 22)))


@op_cases("InstanceNormalization", count=20, minimum=17)
def gen_instance_norm(rng, op):
    C = int(rng.integers(1, 4))
    shape = [int(rng.integers(1, 3)), C] + ints(rng, 1, 6, int(rng.integers(1, 4)))
    dt = float_dtype(rng, 0.2)
    feeds = {"input": rnd(rng, shape, dt, 2.0), "scale": rnd(rng, [C], dt), "B": rnd(rng, [C], dt)}
    return Case(node(op, list(feeds), ["Y"], epsilon=pick(rng, [None, 1e-2])), feeds,
                int(rng.integers(17, 22)), atol=1e-4 if dt == F32 else None)


@op_cases("BatchNormalization", count=20, minimum=17)
def gen_batch_norm(rng, op):
    C = int(rng.integers(1, 4))
    shape = [int(rng.integers(1, 3)), C] + ints(rng, 1, 5, int(rng.integers(0, 3)))
    dt = float_dtype(rng, 0.2)
    feeds = {"X": rnd(rng, shape, dt), "scale": rnd(rng, [C], dt), "B": rnd(rng, [C], dt),
             "input_mean": rnd(rng, [C], dt), "input_var": rng.uniform(0.5, 2, C).astype(dt)}
    outputs, attrs = ["Y"], dict(epsilon=pick(rng, [None, 1e-3]))
    if rng.random() < 0.3:  # training mode: batch statistics, and the updated running ones
        outputs += ["running_mean", "running_var"]
        attrs.update(training_mode=1, momentum=pick(rng, [None, 0.8]))
    return Case(node(op, list(feeds), outputs, **attrs), feeds, int(rng.integers(17, 22)), atol=1e-4)


# --------------------------------------------------------------------------- reductions

REDUCE_OPS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


@op_cases(*REDUCE_OPS, count=14, minimum=12)
def gen_reduce(rng, op):
    opset = int(rng.integers(17, 22))
    shape = ints(rng, 1, 5, int(rng.integers(1, 5)))
    r = len(shape)
    dt = pick(rng, [F32, F32, F32, F16, I64] if op in ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                                                       "ReduceMean", "ReduceSumSquare", "ReduceL1")
              else [F32, F32, F32, F16])
    if op == "ReduceLogSum":
        x = rng.uniform(0.5, 2.0, shape).astype(dt)
    elif op == "ReduceProd" and dt != I64:
        x = rng.uniform(0.7, 1.3, shape).astype(dt)
    else:
        x = rnd(rng, shape, dt)
    choice = pick(rng, ["some", "some", "all", "empty"])
    axes = None
    if choice == "some":
        n = int(rng.integers(1, r + 1))
        axes = [int(a) - (r if rng.random() < 0.4 else 0) for a in rng.choice(r, n, replace=False)]
    attrs = dict(keepdims=pick(rng, [None, 0, 1]))
    if choice == "empty":
        attrs["noop_with_empty_axes"] = int(rng.integers(0, 2))
    consts, inputs = {}, ["X"]
    axes_input = op == "ReduceSum" or opset >= 18
    if axes_input:
        if choice == "some":
            consts["axes"] = np.array(axes, I64)
            inputs.append("axes")
        elif choice == "empty" and rng.random() < 0.5:
            consts["axes"] = np.zeros(0, I64)
            inputs.append("axes")
    else:
        attrs["axes"] = axes
        attrs.pop("noop_with_empty_axes", None)
    tol = dict(rtol=2e-3, atol=2e-3) if dt == F16 else {}
    return Case(node(op, inputs, ["Y"], **attrs), {"X": x}, opset, consts, **tol)


@op_cases("ArgMax", "ArgMin", count=20, minimum=17)
def gen_arg(rng, op):
    shape = ints(rng, 1, 6, int(rng.integers(1, 4)))
    dt = pick(rng, [F32, I64, F16])
    x = rng.integers(0, 4, size=shape).astype(dt) if rng.random() < 0.5 else rnd(rng, shape, dt)
    attrs = dict(axis=int(rng.integers(-len(shape), len(shape))), keepdims=pick(rng, [None, 0, 1]),
                 select_last_index=pick(rng, [None, 0, 1]))
    return Case(node(op, ["X"], ["Y"], **attrs), {"X": x}, int(rng.integers(17, 22)))


@op_cases("TopK", count=20, minimum=17)
def gen_topk(rng, op):
    shape = ints(rng, 1, 7, int(rng.integers(1, 4)))
    axis = int(rng.integers(-len(shape), len(shape)))
    dt = pick(rng, [F32, F32, I64, F16])
    # ties (small integers) check the order the spec fixes: the lower index first
    x = rng.integers(0, 4, size=shape).astype(dt) if rng.random() < 0.5 else rnd(rng, shape, dt)
    k = int(rng.integers(0, shape[axis] + 1))
    attrs = dict(axis=pick(rng, [axis, None] if axis in (-1, len(shape) - 1) else [axis]),
                 largest=pick(rng, [None, 0, 1]), sorted=pick(rng, [None, 1]))
    return Case(node(op, ["X", "K"], ["Values", "Indices"], **attrs), {"X": x},
                int(rng.integers(17, 22)), {"K": np.array([k], I64)})


@op_cases("CumSum", count=20, minimum=17)
def gen_cumsum(rng, op):
    shape = ints(rng, 1, 6, int(rng.integers(1, 4)))
    dt = pick(rng, [F32, F32, I64, F64])
    axis = np.array(int(rng.integers(-len(shape), len(shape))), pick(rng, [I64, I32]))
    attrs = dict(exclusive=pick(rng, [None, 0, 1]), reverse=pick(rng, [None, 0, 1]))
    return Case(node(op, ["X", "axis"], ["Y"], **attrs), {"X": rnd(rng, shape, dt)},
                int(rng.integers(17, 22)), {"axis": axis})


# --------------------------------------------------------------------------- indexing

@op_cases("Gather", count=20, minimum=17)
def gen_gather(rng, op):
    shape = ints(rng, 1, 5, int(rng.integers(1, 4)))
    axis = int(rng.integers(-len(shape), len(shape)))
    n = shape[axis]
    idx = rng.integers(-n, n, size=ints(rng, 1, 4, int(rng.integers(0, 3)))).astype(pick(rng, [I64, I32]))
    dt = pick(rng, [F32, I64, F16])
    return Case(node(op, ["data", "indices"], ["Y"], axis=axis), {"data": rnd(rng, shape, dt),
                "indices": idx}, int(rng.integers(17, 22)))


@op_cases("GatherElements", count=20, minimum=17)
def gen_gather_elements(rng, op):
    shape = ints(rng, 1, 5, int(rng.integers(1, 4)))
    axis = int(rng.integers(-len(shape), len(shape)))
    ishape = [int(rng.integers(1, d + 1)) for d in shape]
    ishape[axis] = int(rng.integers(1, 6))
    n = shape[axis]
    feeds = {"data": rnd(rng, shape, pick(rng, [F32, I64])),
             "indices": rng.integers(-n, n, size=ishape).astype(pick(rng, [I64, I32]))}
    return Case(node(op, ["data", "indices"], ["Y"], axis=axis), feeds, int(rng.integers(17, 22)))


@op_cases("GatherND", count=20, minimum=17)
def gen_gather_nd(rng, op):
    r = int(rng.integers(1, 5))
    shape = ints(rng, 1, 4, r)
    b = int(rng.integers(0, r))
    m = int(rng.integers(1, r - b + 1))
    q_extra = ints(rng, 1, 3, int(rng.integers(0, 3)))
    ishape = shape[:b] + q_extra + [m]
    dims = np.array(shape[b:b + m])
    idx = (rng.random(ishape) * (2 * dims) - dims).astype(np.int64)  # in [-dim, dim)
    feeds = {"data": rnd(rng, shape, pick(rng, [F32, I64])), "indices": idx}
    return Case(node(op, ["data", "indices"], ["Y"], batch_dims=b or None), feeds, int(rng.integers(17, 22)))


@op_cases("ScatterND", count=20, minimum=17)
def gen_scatter_nd(rng, op):
    r = int(rng.integers(1, 4))
    shape = ints(rng, 1, 4, r)
    m = int(rng.integers(1, r + 1))
    reduction = pick(rng, ["none", "none", "add", "mul", "max", "min"])
    cells = list(itertools.product(*[range(d) for d in shape[:m]]))
    n = int(rng.integers(1, len(cells) + 1))
    if reduction == "none":  # duplicate targets are unspecified without a reduction
        chosen = [cells[i] for i in rng.choice(len(cells), n, replace=False)]
    else:
        chosen = [cells[i] for i in rng.integers(0, len(cells), n)]
    idx = np.array(chosen, np.int64).reshape(n, m)
    idx = np.where(rng.random(idx.shape) < 0.3, idx - np.array(shape[:m]), idx)  # negative indices
    dt = pick(rng, [F32, F32, I64])
    feeds = {"data": rnd(rng, shape, dt), "indices": idx, "updates": rnd(rng, [n] + shape[m:], dt)}
    return Case(node(op, list(feeds), ["Y"], reduction=None if reduction == "none" else reduction),
                feeds, int(rng.integers(18, 22)))


@op_cases("ScatterElements", count=20, minimum=17)
def gen_scatter_elements(rng, op):
    shape = ints(rng, 1, 5, int(rng.integers(1, 4)))
    r = len(shape)
    axis = int(rng.integers(-r, r))
    reduction = pick(rng, ["none", "none", "add", "mul", "max", "min"])
    ishape = [int(rng.integers(1, d + 1)) for d in shape]
    n = shape[axis]
    if reduction == "none":  # distinct targets along the axis for each position
        ishape[axis] = int(rng.integers(1, n + 1))
        perm = np.argsort(rng.random([*ishape[:axis % r], n, *ishape[axis % r + 1:]]), axis=axis)
        idx = np.take(perm, np.arange(ishape[axis]), axis=axis)
    else:
        idx = rng.integers(0, n, size=ishape)
    idx = np.where(rng.random(idx.shape) < 0.3, idx - n, idx).astype(pick(rng, [I64, I32]))
    dt = pick(rng, [F32, F32, I64])
    feeds = {"data": rnd(rng, shape, dt), "indices": idx, "updates": rnd(rng, list(idx.shape), dt)}
    return Case(node(op, list(feeds), ["Y"], axis=axis, reduction=None if reduction == "none" else reduction),
                feeds, int(rng.integers(18, 22)))


# --------------------------------------------------------------------------- shape and layout

@op_cases("Slice", count=20, minimum=17)
def gen_slice(rng, op):
    shape = ints(rng, 1, 7, int(rng.integers(1, 5)))
    r = len(shape)
    axes = [int(a) for a in rng.choice(r, int(rng.integers(1, r + 1)), replace=False)]
    starts, ends, steps = [], [], []
    for a in axes:
        n = shape[a]
        step = pick(rng, [1, 1, 2, 3, -1, -2])
        s = int(rng.integers(-n - 2, n + 2))
        if rng.random() < 0.25:  # before the first element: clamps to 0 for either step sign
            s = -n - int(rng.integers(1, 4))
        e = int(rng.integers(-n - 2, n + 2))
        if rng.random() < 0.2:
            # INT64_MIN / INT64_MAX: "to the end" backwards / forwards.  onnxruntime also reads
            # INT64_MAX with a negative step as "to the start", where the spec clamps it to
            # dim - 1 (an empty slice), so that pairing is not drawn.
            e = -2**63 if step < 0 else pick(rng, [2**63 - 1, -2**63])
        starts.append(s), ends.append(e), steps.append(step)
    consts = {"starts": np.array(starts, I64), "ends": np.array(ends, I64)}
    names = ["data", "starts", "ends"]
    # without axes and steps the slice covers the leading axes with step 1
    if rng.random() < 0.8 or steps != [1] * len(axes) or axes != list(range(len(axes))):
        consts["axes"] = np.array([a - r if rng.random() < 0.3 else a for a in axes], I64)
        consts["steps"] = np.array(steps, I64)
        names += ["axes", "steps"]
    return Case(node(op, names, ["Y"]), {"data": rnd(rng, shape, pick(rng, [F32, I64]))},
                int(rng.integers(17, 22)), consts)


@op_cases("Pad", count=20, minimum=17)
def gen_pad(rng, op):
    opset = int(rng.integers(18, 22))
    shape = ints(rng, 1, 5, int(rng.integers(1, 5)))
    r = len(shape)
    mode = pick(rng, ["constant", "reflect", "edge"] + (["wrap"] if opset >= 19 else []))
    use_axes = rng.random() < 0.4
    axes = sorted(int(a) for a in rng.choice(r, int(rng.integers(1, r + 1)), replace=False)) if use_axes \
        else list(range(r))
    pads = []
    for side in range(2):
        for a in axes:
            n = shape[a]
            if mode == "reflect":
                hi = n - 1
            elif mode == "constant":
                hi = 3
            else:
                hi = min(n, 3)
            lo = -(n // 2) if mode == "constant" and rng.random() < 0.3 else 0
            pads.append(int(rng.integers(lo, hi + 1)))
    consts = {"pads": np.array(pads, I64)}
    names = ["data", "pads"]
    dt = pick(rng, [F32, F32, I64, F16])
    if mode == "constant" and rng.random() < 0.6:
        consts["constant_value"] = np.array(pick(rng, [1.5, -2.0]), dt) if dt != I64 else np.array(7, I64)
        names.append("constant_value")
    if use_axes:
        if len(names) == 2:
            names.append("")
        consts["axes"] = np.array([a - r if rng.random() < 0.3 else a for a in axes], I64)
        names.append("axes")
    return Case(node(op, names, ["Y"], mode=mode), {"data": rnd(rng, shape, dt)}, opset, consts)


@op_cases("Transpose", count=12, minimum=12)
def gen_transpose(rng, op):
    shape = ints(rng, 1, 5, int(rng.integers(1, 6)))
    perm = [int(p) for p in rng.permutation(len(shape))] if rng.random() < 0.8 else None
    return Case(node(op, ["X"], ["Y"], perm=perm), {"X": rnd(rng, shape, pick(rng, [F32, I64, F16]))},
                int(rng.integers(17, 22)))


@op_cases("Concat", count=12, minimum=12)
def gen_concat(rng, op):
    shape = ints(rng, 1, 4, int(rng.integers(1, 4)))
    axis = int(rng.integers(-len(shape), len(shape)))
    dt = pick(rng, [F32, I64, F16])
    feeds = {}
    for i in range(int(rng.integers(1, 5))):
        s = list(shape)
        s[axis] = int(rng.integers(0 if i else 1, 4))
        feeds[f"x{i}"] = rnd(rng, s, dt)
    return Case(node(op, list(feeds), ["Y"], axis=axis), feeds, int(rng.integers(17, 22)))


@op_cases("Split", count=20, minimum=17)
def gen_split(rng, op):
    opset = int(rng.integers(17, 22))
    shape = ints(rng, 1, 7, int(rng.integers(1, 4)))
    axis = int(rng.integers(-len(shape), len(shape)))
    n = shape[axis]
    kind = pick(rng, ["split", "num_outputs" if opset >= 18 else "equal"])
    consts, names, attrs = {}, ["X"], dict(axis=axis)
    if kind == "split":
        k = int(rng.integers(1, 4))
        cuts = sorted(int(c) for c in rng.integers(0, n + 1, k - 1))
        parts = np.diff([0] + cuts + [n])
        consts["split"] = parts.astype(I64)
        names.append("split")
        outs = k
    elif kind == "num_outputs":
        outs = int(rng.integers(1, n + 1))
        attrs["num_outputs"] = outs
    else:
        divisors = [d for d in range(1, n + 1) if n % d == 0]
        outs = pick(rng, divisors)
    return Case(node(op, names, [f"y{i}" for i in range(outs)], **attrs),
                {"X": rnd(rng, shape, pick(rng, [F32, I64]))}, opset, consts)


@op_cases("Expand", count=12, minimum=12)
def gen_expand(rng, op):
    out = ints(rng, 1, 4, int(rng.integers(1, 5)))
    src = list(bcast_shape(rng, out))
    shape = [1 if rng.random() < 0.3 else d for d in out]  # the shape input may itself hold ones
    if rng.random() < 0.3:
        shape = shape[int(rng.integers(0, len(shape))):]
    return Case(node(op, ["X", "shape"], ["Y"]), {"X": rnd(rng, src, pick(rng, [F32, I64]))},
                int(rng.integers(17, 22)), {"shape": np.array(shape, I64)})


@op_cases("Tile", count=12, minimum=12)
def gen_tile(rng, op):
    shape = ints(rng, 1, 4, int(rng.integers(1, 4)))
    reps = np.array(ints(rng, 0, 3, len(shape)), I64)
    return Case(node(op, ["X", "repeats"], ["Y"]), {"X": rnd(rng, shape, pick(rng, [F32, I64]))},
                int(rng.integers(17, 22)), {"repeats": reps})


@op_cases("Where", count=12, minimum=12)
def gen_where(rng, op):
    out = ints(rng, 1, 4, int(rng.integers(0, 4)))
    dt = pick(rng, [F32, I64, F16])
    feeds = {"C": rng.random(bcast_shape(rng, out)) < 0.5, "X": rnd(rng, bcast_shape(rng, out), dt),
             "Y": rnd(rng, bcast_shape(rng, out), dt)}
    return Case(node(op, ["C", "X", "Y"], ["Z"]), feeds, int(rng.integers(17, 22)))


CAST_TYPES = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int16, np.uint16, np.int32,
              np.uint32, np.int64, np.uint64, np.bool_]


@op_cases("Cast", count=30, minimum=27)
def gen_cast(rng, op):
    src, dst = np.dtype(pick(rng, CAST_TYPES)), np.dtype(pick(rng, CAST_TYPES))
    shape = ints(rng, 1, 5, int(rng.integers(0, 3)))
    if src.kind == "b":
        x = rng.random(shape) < 0.5
    else:
        # values every type holds; floats converted to integers keep their fraction (truncation)
        lo = 0 if (src.kind == "u" or dst.kind == "u") else -100
        x = rng.uniform(lo, 100, shape)
        x = (x if src.kind == "f" else np.trunc(x)).astype(src)
    return Case(node(op, ["X"], ["Y"], to=helper.np_dtype_to_tensor_dtype(dst)), {"X": x},
                int(rng.integers(17, 22)), note=f"{src} -> {dst}")


# --------------------------------------------------------------------------- recurrent

@op_cases("LSTM", "GRU", "RNN", count=16, minimum=14)
def gen_rnn(rng, op):
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    direction = pick(rng, ["forward", "reverse", "bidirectional"])
    D = 2 if direction == "bidirectional" else 1
    T, B, I, H = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
    feeds = {"X": rnd(rng, [T, B, I]), "W": rnd(rng, [D, gates * H, I], scale=0.5),
             "R": rnd(rng, [D, gates * H, H], scale=0.5)}
    names = ["X", "W", "R"]
    extras = {"B": [D, 2 * gates * H], "sequence_lens": None, "initial_h": [D, B, H]}
    if op == "LSTM":
        extras.update({"initial_c": [D, B, H], "P": [D, 3 * H]})
    for name, shape in extras.items():
        if rng.random() < 0.5:
            if name == "sequence_lens":
                feeds[name] = rng.integers(1, T + 1, B).astype(I32)
            else:
                feeds[name] = rnd(rng, shape, scale=0.5)
            names.append(name)
        else:
            names.append("")
    while names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attrs = dict(hidden_size=H, direction=direction)
    if op == "GRU":
        attrs["linear_before_reset"] = int(rng.integers(0, 2))
    if rng.random() < 0.2:
        attrs["clip"] = 1.0
    if op == "LSTM" and rng.random() < 0.3:
        attrs["input_forget"] = 1
    # layout=1 (batch-major) is not drawn: onnxruntime's CPU kernels refuse it
    if op == "RNN" and rng.random() < 0.3:
        attrs["activations"] = ["Relu"] * D
    return Case(node(op, names, outputs, **attrs), feeds, int(rng.integers(17, 22)), atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- element-wise

@op_cases("Clip", count=20, minimum=17)
def gen_clip(rng, op):
    shape = ints(rng, 1, 5, int(rng.integers(0, 4)))
    dt = pick(rng, [F32, F32, I64, F16])
    lo, hi = sorted(rnd(rng, [2], dt))
    if rng.random() < 0.15:  # min > max: the spec sets every value to max
        lo, hi = hi, lo
    names, consts = ["X"], {}
    if rng.random() < 0.7:
        consts["min"] = np.array(lo, dt)
    for name in ("min", "max"):
        if name == "max" and rng.random() < 0.7:
            consts["max"] = np.array(hi, dt)
        names.append(name if name in consts else "")
    while names[-1] == "":
        names.pop()
    return Case(node(op, names, ["Y"]), {"X": rnd(rng, shape, dt)}, int(rng.integers(17, 22)), consts)


@op_cases("Gelu", count=12, minimum=10)
def gen_gelu(rng, op):
    dt = float_dtype(rng, 0.25)
    return Case(node(op, ["X"], ["Y"], approximate=pick(rng, [None, "none", "tanh"])),
                {"X": rnd(rng, ints(rng, 1, 6, int(rng.integers(1, 4))), dt, 3.0)}, int(rng.integers(20, 22)))


@op_cases("Erf", count=10, minimum=9)
def gen_erf(rng, op):
    dt = float_dtype(rng, 0.3)
    return Case(node(op, ["X"], ["Y"]), {"X": rnd(rng, ints(rng, 1, 6, int(rng.integers(1, 4))), dt, 2.0)},
                int(rng.integers(17, 22)))


@op_cases("Pow", count=20, minimum=17)
def gen_pow(rng, op):
    out = ints(rng, 1, 4, int(rng.integers(0, 4)))
    tx, ty = pick(rng, [(F32, F32), (F32, F32), (F32, I64), (I64, I64), (I64, F32), (F16, F16), (F64, F64)])
    if np.dtype(tx).kind == "f":
        x = rng.uniform(0.1, 3.0, bcast_shape(rng, out)).astype(tx)
        if np.dtype(ty).kind == "i":  # negative bases only meet integer exponents
            x = rng.uniform(-3.0, 3.0, x.shape).astype(tx)
    else:
        x = rng.integers(-4, 5, bcast_shape(rng, out)).astype(tx)
    if np.dtype(ty).kind == "f":
        y = rng.uniform(-2.0, 3.0, bcast_shape(rng, out)).astype(ty)
        if np.dtype(tx).kind == "i":  # integer bases: whole non-negative exponents
            y = rng.integers(0, 4, y.shape).astype(ty)
    else:
        y = rng.integers(0, 4, bcast_shape(rng, out)).astype(ty)
    return Case(node(op, ["X", "Y"], ["Z"]), {"X": x, "Y": y}, int(rng.integers(17, 22)),
                rtol=2e-3 if tx == F16 else 1e-5)


@op_cases("Mod", count=20, minimum=17)
def gen_mod(rng, op):
    out = ints(rng, 1, 4, int(rng.integers(0, 4)))
    dt = pick(rng, [F32, I64, I32, F64, F16])
    fmod = 1 if np.dtype(dt).kind == "f" else int(rng.integers(0, 2))
    if np.dtype(dt).kind == "f":
        a = rnd(rng, bcast_shape(rng, out), dt, 5.0)
        b = rng.uniform(0.5, 3.0, bcast_shape(rng, out)) * rng.choice([-1, 1], bcast_shape(rng, out) or None)
        b = np.asarray(b, dtype=dt)
    else:
        a = rng.integers(-20, 21, bcast_shape(rng, out)).astype(dt)
        b = rng.integers(1, 7, bcast_shape(rng, out)) * rng.choice([-1, 1])
        b = np.asarray(b, dtype=dt)
    tol = dict(rtol=1e-3, atol=1e-2) if dt == F16 else {}
    return Case(node(op, ["A", "B"], ["C"], fmod=fmod), {"A": a, "B": b}, int(rng.integers(17, 22)), **tol)


# --------------------------------------------------------------------------- the test

@pytest.mark.parametrize("op", sorted(GENERATORS))
def test_matches_onnxruntime(op):
    _, count, minimum = GENERATORS[op]
    count, minimum = count * SCALE, minimum * SCALE
    seed = zlib.crc32(op.encode())
    ran, failures = 0, []
    for i in range(count):
        case = _draw(op, i)
        data, expected = _ort_run(case)
        if expected is None:
            continue
        ran += 1
        try:
            got = ortgpu.InferenceSession(data, providers=CPU).run(None, case.feeds)
            compare(case, expected, got, TOL)
        except Exception as e:  # noqa: BLE001 - every disagreement is reported with its config
            failures.append(f"{op} config {i} (seed [{seed}, {i}]): {case.describe()}\n    "
                            f"{type(e).__name__}: {str(e)[:600]}")
    assert not failures, f"{len(failures)} of {ran} configurations differ:\n" + "\n".join(failures)
    assert ran >= minimum, f"only {ran} of {count} configurations ran (onnxruntime refused the rest)"
