"""Automatic mixed precision: the largest set of nodes that run in float16 within a tolerance.

Bisection over the top graph's nodes in topological order (subgraphs follow their node):
try a segment in float16 together with the nodes already accepted; if the outputs on `feeds`
stay within ``|fp16 - fp32| <= atol + rtol * |fp32|`` (same finiteness, integer outputs equal)
the segment is accepted, else it is split in halves and each half tried in turn.  A single
node that breaks the tolerance stays float32, with the measured error as its reason.  Greedy
in order, so earlier nodes win; the number of trials grows as (nodes kept) * log2(nodes).
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
from onnx import TensorProto

from ortgpu.precision.convert import convert_model


@dataclasses.dataclass
class AmpResult:
    """The converted model, the nodes in float16, the nodes kept float32 with the reason for
    each, the largest absolute output error of the final model, and the number of trials."""
    model: onnx.ModelProto
    fp16_nodes: list[str]
    fp32_nodes: dict[str, str]
    max_error: float
    trials: int


@dataclasses.dataclass
class _Trial:
    ok: bool
    max_error: float
    why: str


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed top-level node a unique name (node_block_list works by name)."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name, k = f"{n.op_type}_{i}", 0
            while name in taken:
                k += 1
                name = f"{n.op_type}_{i}_{k}"
            n.name = name
            taken.add(name)


def compare_outputs(names, got, ref, rtol: float, atol: float) -> _Trial:
    """Whether every output is within tolerance of the reference, the largest absolute error
    of the float outputs, and a sentence about the worst output."""
    worst, why, ok = 0.0, "", True
    for name, a, b in zip(names, got, ref):
        a, b = np.asarray(a), np.asarray(b)
        if b.dtype.kind not in "fc" and not np.issubdtype(b.dtype, np.floating):
            if not np.array_equal(a, b):
                ok, why = False, f"output '{name}' differs in {int(np.sum(a != b))} elements"
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if not np.array_equal(np.isfinite(a64), np.isfinite(b64)):
            return _Trial(False, float("inf"), f"output '{name}' has non-finite values where float32 has none")
        finite = np.isfinite(b64)
        err = np.abs(a64 - b64)[finite]
        if err.size:
            excess = float(np.max(err - (atol + rtol * np.abs(b64[finite]))))
            if float(err.max()) > worst:
                worst = float(err.max())
            if excess > 0 and ok:
                ok, why = False, f"output '{name}' max |error| {float(err.max()):.3g} exceeds atol + rtol*|ref|"
    return _Trial(ok, worst, why)


class _Search:
    def __init__(self, model, feeds, rtol, atol, keep_io_types, providers, op_block_list):
        from ortgpu.session import InferenceSession  # noqa: PLC0415 - ortgpu.session imports this package
        self.session = InferenceSession
        self.model, self.feeds = model, feeds
        self.rtol, self.atol = rtol, atol
        self.keep_io_types, self.providers, self.op_block_list = keep_io_types, providers, op_block_list
        sess = InferenceSession(model, providers=providers)
        self.output_names = [o.name for o in sess.get_outputs()]
        self.reference = sess.run(None, feeds)
        self.trials = 0

    def convert(self, fp16: set, candidates: list[str]):
        return convert_model(self.model, TensorProto.FLOAT16, keep_io_types=self.keep_io_types,
                             op_block_list=self.op_block_list,
                             node_block_list=[n for n in candidates if n not in fp16])

    def trial(self, fp16: set, candidates: list[str]) -> _Trial:
        self.trials += 1
        converted, _ = self.convert(fp16, candidates)
        feeds = self.feeds if self.keep_io_types else {
            k: (v.astype(np.float16) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v)
            for k, v in self.feeds.items()}
        got = self.session(converted, providers=self.providers).run(None, feeds)
        return compare_outputs(self.output_names, got, self.reference, self.rtol, self.atol)

    def bisect(self, segment: list[str], fp16: set, kept: dict, candidates: list[str]) -> None:
        result = self.trial(fp16 | set(segment), candidates)
        if result.ok:
            fp16.update(segment)
        elif len(segment) == 1:
            kept[segment[0]] = f"in float16 with the nodes accepted before it: {result.why}"
        else:
            half = len(segment) // 2
            self.bisect(segment[:half], fp16, kept, candidates)
            self.bisect(segment[half:], fp16, kept, candidates)


def auto_mixed_precision(model: onnx.ModelProto, feeds: dict, rtol: float = 1e-2, atol: float = 1e-3,
                         keep_io_types: bool = True, *, providers=None, op_block_list=None) -> AmpResult:
    """Convert `model` to float16 keeping in float32 only the nodes whose float16 version takes
    the outputs on `feeds` out of tolerance (rules in the module docstring).  `providers`
    runs the trials (default: ortgpu's available providers); `op_block_list` as in
    convert_float_to_float16 (default DEFAULT_OP_BLOCK_LIST)."""
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, not {type(model).__name__}")
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    model = copy.deepcopy(model)
    _name_nodes(model)
    search = _Search(model, feeds, rtol, atol, keep_io_types, providers, op_block_list)
    names = [n.name for n in model.graph.node]
    _, everything = convert_model(model, TensorProto.FLOAT16, keep_io_types=keep_io_types,
                                  op_block_list=op_block_list)
    by_rule = {name: reason for name, _, reason in everything.kept_float32 if name}
    candidates = [n for n in names if n not in by_rule]
    fp16: set[str] = set()
    kept: dict[str, str] = {}
    if candidates:
        search.bisect(candidates, fp16, kept, candidates)
    converted, _ = search.convert(fp16, candidates)
    final = search.trial(fp16, candidates)
    kept.update(by_rule)
    return AmpResult(converted, [n for n in candidates if n in fp16], kept, final.max_error, search.trials)
