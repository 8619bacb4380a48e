"""Summaries of a trace (ours or onnxruntime's): top nodes, time per op type, GPU / CPU / copy
time, achieved FLOP/s and bytes/s per node against the device's peak.

Times are self times: a node event that contains others (If, Loop, Scan running their bodies)
counts only the time not spent in its children, so that the per-node and per-op-type totals add
up to the time of the top-level node events, and shares add up to one.  ``skip_runs`` leaves out
the first runs (warm-up) by dropping the events inside their ``model_run`` event.
"""
from __future__ import annotations

import dataclasses
import statistics

from ortgpu.profiling.cost import Peak, flops
from ortgpu.profiling.trace import read_trace

SUFFIX = "_kernel_time"


def kind_label(s: "Summary", kind: str) -> str:
    """'cpu' nodes of a session that also ran nodes on a GPU are CPU fallbacks."""
    return "cpu-fallback" if kind == "cpu" and s.kinds.get("gpu") else kind


def kind_of(op_type: str, provider: str) -> str:
    """'copy' for Memcpy steps, 'cpu' for nodes on the CPU provider, 'gpu' for any device provider."""
    if op_type.startswith("Memcpy"):
        return "copy"
    return "cpu" if provider == "CPUExecutionProvider" else "gpu"


@dataclasses.dataclass
class NodeRow:
    name: str
    op_type: str
    provider: str
    kind: str
    calls: int = 0
    host_us: float = 0.0          # self time, all counted runs together
    device_us: float | None = None
    flops: int = 0                # all calls together
    bytes: int = 0
    type_name: str = "float"
    input_shapes: str = ""        # the inputs' shapes at the first call, e.g. "1x3x224x224, 64x3x7x7"
    flops_pct: float | None = None   # of the device's peak
    bytes_pct: float | None = None

    @property
    def busy_s(self) -> float:
        """The time the work took: device time where measured, else host time."""
        return (self.device_us if self.device_us is not None else self.host_us) * 1e-6

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.busy_s if self.busy_s > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.busy_s if self.busy_s > 0 else 0.0


@dataclasses.dataclass
class OpRow:
    op_type: str
    nodes: int
    calls: int
    host_us: float
    device_us: float | None
    share: float


@dataclasses.dataclass
class Summary:
    trace: str
    runs: int                       # model_run events counted
    skipped_runs: int
    run_us: list[int]               # duration of each counted run
    node_us: float                  # self time of all counted node events
    nodes: list[NodeRow]            # by host time, largest first
    ops: list[OpRow]                # by host time, largest first
    kinds: dict[str, float]         # 'cpu' / 'gpu' / 'copy' -> host us
    device_us: float | None         # Kernel events (device time) of counted nodes
    session: dict[str, int]         # model loading and initialization, us
    notes: list[str]
    telemetry: dict[str, tuple[float, float]]  # counter -> (mean, max)
    peaks: dict[str, Peak]
    gpu: dict = dataclasses.field(default_factory=dict)  # device, driver, mem_total_mib (NVML)
    setup: dict = dataclasses.field(default_factory=dict)  # set-up phase -> us (ortgpu traces)
    memory: dict = dataclasses.field(default_factory=dict)  # session_initialization's memory args (ortgpu traces)

    def run_spread(self) -> dict[str, float] | None:
        """Run-to-run spread of the counted runs, us: min, median, p90, max (None without runs).
        A p90 far above the median is a loaded machine or threads fighting; see the README."""
        if not self.run_us:
            return None
        ordered = sorted(self.run_us)
        return {"min": float(ordered[0]), "median": float(statistics.median(ordered)),
                "p90": _percentile(ordered, 0.9), "max": float(ordered[-1])}


def _percentile(ordered: list, q: float) -> float:
    """The q-quantile of sorted values, linear between neighbours (numpy's default method)."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def summarize(trace, skip_runs: int = 0, peaks: dict[str, Peak] | None = None) -> Summary:
    """Summarize a trace file (or its list of events).  `peaks` maps 'cpu' / 'gpu' to a Peak
    (ortgpu.profiling.cost) for the share-of-peak columns."""
    events = read_trace(trace)
    peaks = peaks or {}
    x = [e for e in events if e.get("ph") == "X"]
    runs = sorted((e for e in x if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    counted = runs[skip_runs:]
    nodes = [e for e in x if e.get("cat") == "Node"]
    if runs:
        nodes = [e for e in nodes if _inside_any(e, counted)]
    self_us = _self_times(nodes)

    rows: dict[tuple, NodeRow] = {}
    row_of_event: dict[int, NodeRow] = {}
    for e, own in zip(nodes, self_us):
        a = e.get("args", {})
        name = e["name"][:-len(SUFFIX)] if e["name"].endswith(SUFFIX) else e["name"]
        op, prov = a.get("op_name", "?"), a.get("provider", "?")
        row = rows.get((name, op, prov))
        if row is None:
            row = rows[(name, op, prov)] = NodeRow(name, op, prov, kind_of(op, prov))
        row.calls += 1
        row.host_us += own
        ins = [_shape(t) for t in a.get("input_type_shape", [])]
        outs = [_shape(t) for t in a.get("output_type_shape", [])]
        row.flops += flops(op, [s for _, s in ins], [s for _, s in outs])
        row.bytes += sum(int(a.get(k, 0)) for k in ("activation_size", "parameter_size", "output_size"))
        if outs:
            row.type_name = outs[0][0]
        if row.calls == 1 and ins:
            row.input_shapes = ", ".join(shape_text(sh) for _, sh in ins)
        row_of_event[id(e)] = row
    device_total = _add_device_times(events, nodes, row_of_event)

    for row in rows.values():
        peak = peaks.get(row.kind)
        if peak is not None and row.busy_s > 0:
            fp = peak.flops_for(row.type_name)
            row.flops_pct = 100 * row.flops_per_s / fp if fp and row.flops else None
            row.bytes_pct = 100 * row.bytes_per_s / peak.bytes_per_s if peak.bytes_per_s else None
    node_rows = sorted(rows.values(), key=lambda r: -r.host_us)
    total = sum(r.host_us for r in node_rows)
    kinds = {"cpu": 0.0, "gpu": 0.0, "copy": 0.0}
    ops: dict[str, list] = {}
    for r in node_rows:
        kinds[r.kind] += r.host_us
        o = ops.setdefault(r.op_type, [0, 0, 0.0, None])
        o[0] += 1
        o[1] += r.calls
        o[2] += r.host_us
        if r.device_us is not None:
            o[3] = (o[3] or 0.0) + r.device_us
    op_rows = sorted((OpRow(op, n, c, us, dev, us / total if total else 0.0)
                      for op, (n, c, us, dev) in ops.items()), key=lambda r: -r.host_us)
    session = {e["name"]: e["dur"] for e in x if e.get("cat") == "Session"
               and e["name"] in ("model_loading_uri", "model_loading_array", "session_initialization")}
    setup = next(({k: float(v) for k, v in e.get("args", {}).items() if k.endswith("_us")} for e in x
                  if e.get("cat") == "Session" and e["name"] == "session_initialization"), {})
    notes = [e.get("args", {}).get("note", "") for e in events
             if e.get("cat") == "Telemetry" and e.get("name") == "note"]
    return Summary(trace if isinstance(trace, str) else "", len(counted), len(runs) - len(counted),
                   [e["dur"] for e in counted], total, node_rows, op_rows, kinds, device_total,
                   session, notes, _telemetry(events), peaks,
                   next((dict(e.get("args", {})) for e in events if e.get("cat") == "Telemetry"
                         and e.get("name") == "gpu_device"), {}), setup,
                   next((dict(e["args"]["memory"]) for e in x if e.get("cat") == "Session"
                         and e["name"] == "session_initialization" and "memory" in e.get("args", {})), {}))


def _inside_any(e: dict, runs: list[dict]) -> bool:
    for r in runs:
        if r.get("tid") == e.get("tid") and r["ts"] <= e["ts"] <= r["ts"] + r["dur"]:
            return True
    return False


def _self_times(nodes: list[dict]) -> list[float]:
    """Each event's duration less that of the events directly nested in it (same thread)."""
    own = [float(e["dur"]) for e in nodes]
    by_tid: dict = {}
    for i, e in enumerate(nodes):
        by_tid.setdefault(e.get("tid"), []).append(i)
    for idx in by_tid.values():
        idx.sort(key=lambda i: (nodes[i]["ts"], -nodes[i]["dur"]))
        stack: list[int] = []  # open events, innermost last
        for i in idx:
            ts = nodes[i]["ts"]
            while stack and nodes[stack[-1]]["ts"] + nodes[stack[-1]]["dur"] <= ts:
                stack.pop()
            if stack:
                own[stack[-1]] -= nodes[i]["dur"]
            stack.append(i)
    return [max(t, 0.0) for t in own]


def _add_device_times(events, nodes, row_of_event) -> float | None:
    """Add each Kernel event's duration to the row of the node event it belongs to (the last
    node event before it with the name in its parent_name)."""
    counted = {id(e) for e in nodes}
    last: dict[str, dict] = {}
    total = None
    for e in events:
        if e.get("cat") == "Node":
            last[e["name"]] = e
        elif e.get("cat") == "Kernel" and e.get("ph") == "X":
            parent = last.get(e.get("args", {}).get("parent_name"))
            if parent is None or id(parent) not in counted:
                continue
            row = row_of_event[id(parent)]
            row.device_us = (row.device_us or 0.0) + e["dur"]
            total = (total or 0.0) + e["dur"]
    return total


def shape_text(shape) -> str:
    """[1, 3, 224, 224] -> '1x3x224x224'; a scalar is 'scalar'."""
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _shape(type_shape: dict) -> tuple[str, list[int]]:
    (t, shape), = type_shape.items()
    return t, shape


def _telemetry(events) -> dict[str, tuple[float, float]]:
    series: dict[str, list[float]] = {}
    for e in events:
        if e.get("ph") == "C" and e.get("cat") == "Telemetry":
            for k, v in e.get("args", {}).items():
                series.setdefault(k, []).append(float(v))
    return {k: (statistics.fmean(v), max(v)) for k, v in series.items() if v}


# --- text -----------------------------------------------------------------------------------
def _ms(us: float) -> str:
    return f"{us / 1000:.3f}"


def _rate(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}%"


def format_table(s: Summary, top: int = 15) -> str:
    """The summary as text tables (times per run)."""
    per = max(s.runs, 1)
    lines = [f"trace: {s.trace}" if s.trace else "trace: (events)"]
    spread = s.run_spread()
    if spread:
        lines.append(f"runs: {s.runs} counted" + (f" ({s.skipped_runs} warm-up skipped)" if s.skipped_runs else "")
                     + f"; run time min {_ms(spread['min'])} ms, median {_ms(spread['median'])} ms, "
                     f"p90 {_ms(spread['p90'])} ms (max/min {spread['max'] / max(spread['min'], 1):.2f}x)")
    run_total = sum(s.run_us)
    share = f" ({100 * s.node_us / run_total:.1f}% of run time)" if run_total else ""
    lines.append(f"node time: {_ms(s.node_us / per)} ms per run{share}")
    kinds = ", ".join(f"{label} {_ms(s.kinds[k] / per)} ms ({100 * s.kinds[k] / s.node_us if s.node_us else 0:.1f}%)"
                      for k, label in (("gpu", "GPU"), ("cpu", "CPU"), ("copy", "copy")))
    lines.append(f"host time by kind: {kinds}")
    if s.device_us is not None:
        lines.append(f"device time (CUDA events): {_ms(s.device_us / per)} ms per run")
    for name, us in s.session.items():
        lines.append(f"{name}: {_ms(us)} ms")
    if s.setup:
        lines.append("set-up: " + ", ".join(f"{k[:-3].replace('_', '/')} {_ms(v)} ms" for k, v in s.setup.items()))
    lines.extend(memory_lines(s))
    lines.append("")
    lines.append(f"top {min(top, len(s.nodes))} nodes (ms per run; rates from shapes over "
                 f"{'device' if s.device_us is not None else 'host'} time):")
    head = ("node", "op", "kind", "calls/run", "host ms", "share", "device ms", "FLOP/s", "%peak", "bytes/s", "%peak",
            "input shapes")
    rows = [head]
    for r in s.nodes[:top]:
        rows.append((_short(r.name), r.op_type, kind_label(s, r.kind), f"{r.calls / per:g}",
                     _ms(r.host_us / per), f"{100 * r.host_us / s.node_us if s.node_us else 0:.1f}%",
                     "" if r.device_us is None else _ms(r.device_us / per),
                     _rate(r.flops_per_s, "FLOP/s") if r.flops else "", _pct(r.flops_pct),
                     _rate(r.bytes_per_s, "B/s"), _pct(r.bytes_pct), _short(r.input_shapes, 48)))
    lines.extend(_columns(rows, drop=None if s.device_us is not None else 6))
    lines.append("")
    lines.append("time per op type (ms per run):")
    rows = [("op", "nodes", "calls/run", "host ms", "share", "device ms")]
    for o in s.ops:
        rows.append((o.op_type, str(o.nodes), f"{o.calls / per:g}",
                     _ms(o.host_us / per), f"{100 * o.share:.1f}%",
                     "" if o.device_us is None else _ms(o.device_us / per)))
    lines.extend(_columns(rows, drop=None if s.device_us is not None else 5))
    for k, p in s.peaks.items():
        lines.append(f"peak ({k}, {p.source}): {_rate(p.flops_for('float'), 'FLOP/s')} float32, "
                     f"{_rate(p.bytes_per_s, 'B/s')}")
    if s.gpu:
        lines.append("gpu: " + ", ".join(f"{k} {v}" for k, v in s.gpu.items() if v is not None))
    for k, (mean, mx) in s.telemetry.items():
        lines.append(f"telemetry {k}: mean {mean:.1f}, max {mx:.1f}")
    for n in s.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def memory_rows(s: Summary) -> list[tuple[str, int, bool]]:
    """The trace's memory figures as (label, value, whether it is bytes) rows: the values of the largest
    run as the plan releases them, against keeping every value (no reuse), parameters, inputs,
    then each provider's arena counters (and its last memory pattern's peak against its lower
    bound and naive sum).  Empty for a trace without one (onnxruntime's)."""
    m = s.memory
    if not m or "planned_peak_bytes" not in m:
        return []
    rows = [("values alive at once (planned release)", m["planned_peak_bytes"], True),
            ("values if every one were kept (naive)", m["naive_bytes"], True),
            ("parameters", m.get("parameter_bytes", 0), True), ("inputs", m.get("input_bytes", 0), True)]
    for key, arena in m.items():
        if key.startswith("arena ") and isinstance(arena, dict):
            rows.extend((f"{key[6:]} arena: {k.replace('_', ' ')}", v,
                         "bytes" in k or k.endswith(("peak", "lower_bound", "naive_sum")))
                        for k, v in arena.items())
    return rows


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def memory_lines(s: Summary) -> list[str]:
    """The memory section as text lines (see memory_rows)."""
    rows = memory_rows(s)
    if not rows:
        return []
    peak, naive = rows[0][1], rows[1][1]
    saved = f", {100 * (1 - peak / naive):.0f}% less" if naive else ""
    lines = [f"memory: values alive at once at most {_mib(peak)} (planned release) against {_mib(naive)} "
             f"with every value kept{saved}; parameters {_mib(rows[2][1])}, inputs {_mib(rows[3][1])}"]
    arena = rows[4:]
    if arena:
        lines.append("memory arenas: " + ", ".join(f"{label} {_mib(v) if is_bytes else v}"
                                                   for label, v, is_bytes in arena))
    return lines


def _short(name: str, width: int = 40) -> str:
    """A long node name cut at the front, where path-like names repeat their scope."""
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _columns(rows, drop: int | None = None) -> list[str]:
    if drop is not None:  # a column with nothing to show (device time on the CPU)
        rows = [r[:drop] + r[drop + 1:] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out
