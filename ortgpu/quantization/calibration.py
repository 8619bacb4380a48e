"""Calibration: run the float model on ortgpu over the user's feeds and turn what each float
tensor holds into a range (MinMax, Percentile, Entropy, Distribution)."""
from __future__ import annotations

import abc

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from ortgpu.errors import InvalidArgument
from ortgpu.quantization.quant_types import CalibrationMethod

_MAX_SAMPLES = 1 << 20


class CalibrationDataReader(abc.ABC):
    """Yields feed dicts from get_next() until it returns None (onnxruntime's contract)."""

    @abc.abstractmethod
    def get_next(self) -> dict | None:
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def set_range(self, start_index: int, end_index: int):
        raise NotImplementedError


class FeedListReader(CalibrationDataReader):
    """A reader over a list of feed dicts (``self.feeds``), from the start again after rewind()."""

    def __init__(self, feeds: list):
        self.feeds = list(feeds)
        self.i = 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def float_tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value the graph names (shape inference fills the intermediates)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    declared = {o.domain for o in probe.opset_import}
    for domain in sorted({n.domain for n in probe.graph.node} - declared - {"ai.onnx"}):
        probe.opset_import.append(helper.make_opsetid(domain, 1))   # onnxruntime tolerates the omission
    try:
        inferred = shape_inference.infer_shapes(probe)
    except Exception:  # shape inference refuses some contrib graphs; fall back to what is declared
        inferred = model
    g = inferred.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types


def _augment(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The model with every named tensor added as a graph output, so one run returns them all."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    for n in names:
        if n not in present:
            m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    return m


def _feeds(reader):
    if reader is None:
        raise InvalidArgument("calibration_data_reader: expected a CalibrationDataReader, got None")
    while True:
        item = reader.get_next()
        if item is None:
            return
        yield item


def collect_activations(model: onnx.ModelProto, names: list[str], reader, providers=None) -> dict:
    """Every named float tensor, per calibration batch, as computed by an ortgpu session."""
    import ortgpu
    sess = ortgpu.InferenceSession(_augment(model, names).SerializeToString(), providers=providers)
    out_names = [o.name for o in sess.get_outputs()]
    wanted = set(names)
    seen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    batches = 0
    for feed in _feeds(reader):
        for name, value in zip(out_names, sess.run(None, feed)):
            if name in wanted and value is not None:
                seen[name].append(np.asarray(value, np.float32))
        batches += 1
    if batches == 0:
        raise InvalidArgument("calibration_data_reader: expected at least one feed, got none")
    return seen


def _minmax(arrays, moving_average: bool, constant: float):
    mins = np.array([a.min() if a.size else 0.0 for a in arrays])
    maxs = np.array([a.max() if a.size else 0.0 for a in arrays])
    if moving_average:
        lo, hi = mins[0], maxs[0]
        for a, b in zip(mins[1:], maxs[1:]):
            lo, hi = lo + constant * (a - lo), hi + constant * (b - hi)
        return float(lo), float(hi)
    return float(mins.min()), float(maxs.max())


def _samples(arrays) -> np.ndarray:
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(1, np.float32)
    if flat.size > _MAX_SAMPLES:
        flat = flat[np.random.default_rng(0).choice(flat.size, _MAX_SAMPLES, replace=False)]
    return flat.astype(np.float64)


def _percentile(arrays, percentile: float, symmetric: bool):
    x = _samples(arrays)
    if symmetric:
        t = float(np.percentile(np.abs(x), percentile))
        return -t, t
    tail = (100.0 - percentile) / 2
    return float(np.percentile(x, tail)), float(np.percentile(x, 100.0 - tail))


def _kl_threshold(hist: np.ndarray, edges: np.ndarray, quant_bins: int) -> float:
    """Clip threshold whose quantized histogram is nearest (KL divergence) to the clipped one."""
    best, best_t = np.inf, edges[-1]
    for i in range(quant_bins, hist.size + 1, max(1, (hist.size - quant_bins) // 256 or 1)):
        p = hist[:i].astype(np.float64).copy()
        p[-1] += hist[i:].sum()
        nonzero = p > 0
        chunks = np.array_split(np.arange(i), quant_bins)
        q = np.zeros(i)
        for c in chunks:
            live = nonzero[c]
            if live.any():
                q[c[live]] = p[c].sum() / live.sum()
        ps, qs = p / p.sum(), q / max(q.sum(), 1e-30)
        mask = ps > 0
        kl = np.sum(ps[mask] * np.log(ps[mask] / np.maximum(qs[mask], 1e-12)))
        if kl < best:
            best, best_t = kl, edges[i]
    return float(best_t)


def _entropy(arrays, num_bins: int, quant_bins: int):
    x = np.abs(_samples(arrays))
    top = x.max() if x.size else 0.0
    if top == 0:
        return 0.0, 0.0
    hist, edges = np.histogram(x, bins=num_bins, range=(0, top))
    t = _kl_threshold(hist, edges, quant_bins)
    return -t, t


def _distribution(arrays):
    """Mean +- the widest multiple of the deviation that still covers the data's bulk (3 sigma),
    clipped to the observed range: what float8 scales are derived from."""
    x = _samples(arrays)
    mean, std = x.mean(), x.std()
    return float(max(x.min(), mean - 3 * std)), float(min(x.max(), mean + 3 * std))


def compute_ranges(values: dict, method, extra: dict) -> dict[str, tuple[float, float]]:
    """One (rmin, rmax) per tensor, by the chosen method and the Calib* extra options."""
    method = method if isinstance(method, CalibrationMethod) else CalibrationMethod[getattr(method, "name", method)]
    symmetric = bool(extra.get("CalibTensorRangeSymmetric", False))
    ranges = {}
    for name, arrays in values.items():
        if not arrays:
            continue
        if method == CalibrationMethod.MinMax:
            lo, hi = _minmax(arrays, bool(extra.get("CalibMovingAverage", False)),
                             float(extra.get("CalibMovingAverageConstant", 0.01)))
        elif method == CalibrationMethod.Percentile:
            lo, hi = _percentile(arrays, float(extra.get("CalibPercentile", 99.999)),
                                 bool(extra.get("CalibTensorRangeSymmetric", True)))
        elif method == CalibrationMethod.Entropy:
            lo, hi = _entropy(arrays, int(extra.get("CalibNumBins", 128)),
                              int(extra.get("CalibNumQuantizedBins", 128)))
        else:
            lo, hi = _distribution(arrays)
        if symmetric:
            t = max(abs(lo), abs(hi))
            lo, hi = -t, t
        ranges[name] = (lo, hi)
    return ranges


def calibrate(model: onnx.ModelProto, names: list[str], reader, method, extra: dict, providers=None):
    """Ranges of the named tensors over the reader's feeds, computed on an ortgpu session."""
    return compute_ranges(collect_activations(model, names, reader, providers), method, extra)
