"""A self-contained HTML report of a trace: timeline of one run, time per op type, top nodes.

Everything is inline (SVG, CSS, a few lines of JavaScript for zooming the timeline); the page
needs no network to open.
"""
from __future__ import annotations

import html
import zlib

from ortgpu.profiling.summary import SUFFIX, Summary, format_table, kind_label, memory_rows
from ortgpu.profiling.trace import read_trace

_PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295"]
_LANE, _PAD, _WIDTH = 18, 4, 1200

_CSS = """
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }
.scroll { overflow-x: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
td, th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
.legend span { display: inline-block; margin-right: 12px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""

_JS = """
function sortTable(th) {
  var table = th.closest('table'), col = Array.prototype.indexOf.call(th.parentNode.children, th);
  var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
  var rows = Array.prototype.slice.call(table.querySelectorAll('tr.row'));
  rows.sort(function (a, b) {
    var x = a.children[col].dataset.v, y = b.children[col].dataset.v, c;
    if (x !== undefined && y !== undefined) { c = parseFloat(x) - parseFloat(y); }
    else { c = a.children[col].textContent.localeCompare(b.children[col].textContent); }
    return asc ? c : -c;
  });
  rows.forEach(function (r) { table.appendChild(r); });
}
document.querySelectorAll('th[data-sort]').forEach(function (th) {
  th.addEventListener('click', function () { sortTable(th); });
});
document.getElementById('filter').addEventListener('input', function (ev) {
  var q = ev.target.value.toLowerCase();
  document.querySelectorAll('#nodes tr.row').forEach(function (r) {
    r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
  });
});
document.getElementById('zoom').addEventListener('input', function (ev) {
  var z = parseFloat(ev.target.value), svg = document.getElementById('timeline');
  var base = parseFloat(svg.dataset.width), scale = parseFloat(svg.dataset.scale) * z;
  svg.setAttribute('width', base * z);
  svg.querySelectorAll('rect[data-t]').forEach(function (r) {
    r.setAttribute('x', parseFloat(r.dataset.t) * scale);
    r.setAttribute('width', Math.max(parseFloat(r.dataset.d) * scale, 0.5));
  });
});
"""


def color_of(op: str) -> str:
    """A colour for an op type outside a report's own assignment (a stable hash)."""
    return _PALETTE[zlib.crc32(op.encode()) % len(_PALETTE)]


def op_colors(op_types) -> dict[str, str]:
    """A distinct colour per op type: the palette in order (op types by time, largest first),
    then hues spread by the golden angle, so that no two op types of a report share one."""
    colors = {}
    for i, op in enumerate(dict.fromkeys(op_types)):
        if i < len(_PALETTE):
            colors[op] = _PALETTE[i]
        else:
            hue = (i * 137.508) % 360
            colors[op] = f"hsl({hue:.0f}, {55 + 20 * (i % 2)}%, {45 + 10 * (i % 3)}%)"
    return colors


def _last_run(events: list[dict]):
    """The node and kernel events of the last model_run (all of them when there is none)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("ph") == "X"]
    kernels = [e for e in events if e.get("cat") == "Kernel" and e.get("ph") == "X"]
    if not runs:
        start = min((e["ts"] for e in nodes), default=0)
        end = max((e["ts"] + e["dur"] for e in nodes), default=1)
        return nodes, kernels, start, end, 0
    r = runs[-1]
    lo, hi = r["ts"], r["ts"] + r["dur"]
    inside = [e for e in nodes if lo <= e["ts"] <= hi]
    names = {e["name"] for e in inside}
    dev = [e for e in kernels if e.get("args", {}).get("parent_name") in names and e["ts"] >= lo]
    end = max([hi] + [e["ts"] + e["dur"] for e in dev])
    return inside, dev, lo, end, len(runs)


def _depths(nodes: list[dict]) -> list[int]:
    order = sorted(range(len(nodes)), key=lambda i: (nodes[i]["ts"], -nodes[i]["dur"]))
    depth = [0] * len(nodes)
    stack: list[int] = []
    for i in order:
        while stack and nodes[stack[-1]]["ts"] + nodes[stack[-1]]["dur"] <= nodes[i]["ts"]:
            stack.pop()
        depth[i] = len(stack)
        stack.append(i)
    return depth


def _timeline(events: list[dict], colors: dict[str, str]) -> tuple[str, str]:
    nodes, kernels, start, end, nruns = _last_run(events)
    span = max(end - start, 1)
    scale = _WIDTH / span
    depth = _depths(nodes)
    host_lanes = max(depth, default=0) + 1
    lanes = host_lanes + (1 if kernels else 0)
    height = lanes * (_LANE + _PAD) + 24
    parts = [f'<svg id="timeline" width="{_WIDTH}" height="{height}" '
             f'data-width="{_WIDTH}" data-scale="{scale:.9g}">']

    def bar(e, lane, label):
        t, d = e["ts"] - start, e["dur"]
        op = e.get("args", {}).get("op_name", "?")
        tip = html.escape(f"{label}\n{op} on {e.get('args', {}).get('provider', '')}\n"
                          f"start {t} us, {d} us")
        y = 20 + lane * (_LANE + _PAD)
        parts.append(f'<rect data-t="{t}" data-d="{d}" x="{t * scale:.2f}" y="{y}" '
                     f'width="{max(d * scale, 0.5):.2f}" height="{_LANE}" fill="{colors.get(op) or color_of(op)}">'
                     f"<title>{tip}</title></rect>")

    for e, dpt in zip(nodes, depth):
        bar(e, dpt, e["name"][:-len(SUFFIX)] if e["name"].endswith(SUFFIX) else e["name"])
    for e in kernels:
        bar(e, host_lanes, e["name"] + " (device)")
    for k in range(11):  # time axis
        x = k * _WIDTH / 10
        parts.append(f'<text x="{min(x + 2, _WIDTH - 60):.0f}" y="12" font-size="10" fill="#666">'
                     f"{span * k / 10 / 1000:.2f} ms</text>")
    parts.append("</svg>")
    what = f"run {nruns} of {nruns}" if nruns else "all node events"
    lane_text = "host thread (nested subgraph nodes below their node)" + (
        "; last lane: device time (CUDA events)" if kernels else "")
    return "".join(parts), f"{what}, {span / 1000:.3f} ms; {lane_text}"


def _op_chart(s: Summary, colors: dict[str, str], top: int = 20) -> str:
    ops = s.ops[:top]
    if not ops:
        return "<p>no node events</p>"
    longest = max(o.host_us for o in ops) or 1
    row, label_w, bar_w = 20, 170, 600
    parts = [f'<svg width="{label_w + bar_w + 160}" '
             f'height="{row * len(ops) + 4}">']
    per = max(s.runs, 1)
    for i, o in enumerate(ops):
        y = i * row
        w = bar_w * o.host_us / longest
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">'
                     f"{html.escape(o.op_type)}</text>"
                     f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="{row - 6}" '
                     f'fill="{colors[o.op_type]}"><title>{html.escape(o.op_type)}: {o.nodes} nodes, '
                     f"{o.calls} calls</title></rect>"
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" font-size="12">'
                     f"{o.host_us / per / 1000:.3f} ms ({100 * o.share:.1f}%)</text>")
    parts.append("</svg>")
    return "".join(parts)


def _node_table(s: Summary, top: int = 200) -> str:
    """The nodes (the `top` slowest), sortable by any column (click its head) and filtered by
    the text box above (a node name, an op type, a shape)."""
    per = max(s.runs, 1)
    head = ["node", "op", "kind", "calls/run", "host ms/run", "share", "device ms/run",
            "GFLOP/s", "% peak", "GB/s", "% peak", "input shapes"]
    rows = ["<tr>" + "".join(f'<th data-sort="1" title="sort">{h}</th>' for h in head) + "</tr>"]
    for r in s.nodes[:top]:
        cells = [r.name, r.op_type, kind_label(s, r.kind), f"{r.calls / per:g}", f"{r.host_us / per / 1000:.3f}",
                 f"{100 * r.host_us / s.node_us if s.node_us else 0:.1f}%",
                 "" if r.device_us is None else f"{r.device_us / per / 1000:.3f}",
                 f"{r.flops_per_s / 1e9:.2f}" if r.flops else "",
                 "" if r.flops_pct is None else f"{r.flops_pct:.1f}%",
                 f"{r.bytes_per_s / 1e9:.2f}", "" if r.bytes_pct is None else f"{r.bytes_pct:.1f}%",
                 r.input_shapes]
        rows.append('<tr class="row">' + "".join(_cell(c) for c in cells) + "</tr>")
    return '<table id="nodes">' + "".join(rows) + "</table>"


def _cell(text: str) -> str:
    """A table cell; a numeric one carries its value for sorting (data-v)."""
    try:
        v = float(text.rstrip("%")) if text else None
    except ValueError:
        v = None
    attr = f' data-v="{v:.9g}"' if v is not None else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def _memory_section(s: Summary) -> str:
    """The memory section as a table (nothing for a trace without a memory event)."""
    rows = memory_rows(s)
    if not rows:
        return ""
    body = "".join(f'<tr><td>{html.escape(label)}</td><td data-v="{v}">'
                   f'{f"{v / 2**20:.2f} MiB" if is_bytes else v}</td></tr>' for label, v, is_bytes in rows)
    return f'<h2>Memory</h2><table class="memory"><tr><th>what</th><th>size</th></tr>{body}</table>\n'


def render_html(summary: Summary, trace, title: str = "ortgpu profile") -> str:
    """The report as one HTML string (`trace`: the trace's path or its events)."""
    events = read_trace(trace)
    colors = op_colors(o.op_type for o in summary.ops)
    timeline, caption = _timeline(events, colors)
    legend = "".join(f'<span><i style="background:{colors[o.op_type]}"></i>{html.escape(o.op_type)}</span>'
                     for o in summary.ops)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"<pre>{html.escape(format_table(summary, top=10))}</pre>\n"
            f"<h2>Timeline</h2><p>{html.escape(caption)}. Zoom: "
            f'<input id="zoom" type="range" min="1" max="40" step="0.5" value="1"></p>'
            f'<div class="legend">{legend}</div><div class="scroll">{timeline}</div>\n'
            f"{_memory_section(summary)}"
            f"<h2>Time per op type</h2>{_op_chart(summary, colors)}\n"
            f'<h2>Nodes</h2><p>Filter: <input id="filter" type="search" placeholder="name, op type or shape">'
            f" (click a column head to sort)</p>{_node_table(summary)}\n"
            f"<script>{_JS}</script></body></html>\n")


def write_html(summary: Summary, trace, path: str, title: str = "ortgpu profile") -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(summary, trace, title))
    return path
