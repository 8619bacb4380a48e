"""Two traces side by side: time per op type in each, per run, and the difference.

The traces may both be ortgpu's, or one ortgpu's and one onnxruntime's of the same model (both
write the same Chrome-trace format, see ortgpu.profiling.trace); `ortgpu profile --compare A B`
prints :func:`format_compare`.  Times are self times per counted run (ortgpu.profiling.summary),
so a fused op in one trace shows as time moved between op types rather than lost.
"""
from __future__ import annotations

import dataclasses

from ortgpu.profiling.summary import Summary, summarize


@dataclasses.dataclass
class OpDelta:
    op_type: str
    a_us: float          # per run in trace A (0 where A has no such node)
    b_us: float          # per run in trace B
    a_calls: float       # calls per run
    b_calls: float

    @property
    def delta_us(self) -> float:
        """B minus A, us per run: positive where B spends more."""
        return self.b_us - self.a_us

    @property
    def ratio(self) -> float | None:
        """B / A (None where A spends no time in the op type)."""
        return self.b_us / self.a_us if self.a_us > 0 else None


def compare(a: Summary, b: Summary) -> list[OpDelta]:
    """Per op type of either summary, its time per run in each; largest |delta| first."""
    pa, pb = max(a.runs, 1), max(b.runs, 1)
    ops_a = {o.op_type: o for o in a.ops}
    ops_b = {o.op_type: o for o in b.ops}
    rows = []
    for op in sorted(set(ops_a) | set(ops_b)):
        oa, ob = ops_a.get(op), ops_b.get(op)
        rows.append(OpDelta(op, oa.host_us / pa if oa else 0.0, ob.host_us / pb if ob else 0.0,
                            oa.calls / pa if oa else 0.0, ob.calls / pb if ob else 0.0))
    rows.sort(key=lambda r: (-abs(r.delta_us), r.op_type))
    return rows


def compare_traces(a_path: str, b_path: str, skip_runs: int = 0) -> tuple[Summary, Summary, list[OpDelta]]:
    """Summaries of both traces (the first `skip_runs` runs of each left out) and their deltas."""
    a, b = summarize(a_path, skip_runs=skip_runs), summarize(b_path, skip_runs=skip_runs)
    return a, b, compare(a, b)


def _median_run_us(s: Summary) -> float | None:
    spread = s.run_spread()
    return spread["median"] if spread else None


def format_compare(a: Summary, b: Summary, rows: list[OpDelta], a_name: str = "A", b_name: str = "B") -> str:
    """The comparison as text: the run times, then one line per op type (ms per run)."""
    lines = [f"A: {a_name} ({a.runs} runs)", f"B: {b_name} ({b.runs} runs)"]
    ma, mb = _median_run_us(a), _median_run_us(b)
    if ma is not None and mb is not None:
        lines.append(f"median run: A {ma / 1000:.3f} ms, B {mb / 1000:.3f} ms, B/A {mb / ma if ma else float('nan'):.2f}x")
    pa, pb = max(a.runs, 1), max(b.runs, 1)
    lines.append(f"node time per run: A {a.node_us / pa / 1000:.3f} ms, B {b.node_us / pb / 1000:.3f} ms")
    lines.append("")
    table = [("op", "A ms", "B ms", "B-A ms", "B/A", "A calls", "B calls")]
    for r in rows:
        table.append((r.op_type, f"{r.a_us / 1000:.3f}", f"{r.b_us / 1000:.3f}", f"{r.delta_us / 1000:+.3f}",
                      "" if r.ratio is None else f"{r.ratio:.2f}x", f"{r.a_calls:g}", f"{r.b_calls:g}"))
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    for t in table:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(t, widths))).rstrip())
    return "\n".join(lines)
