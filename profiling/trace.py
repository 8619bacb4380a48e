"""onnxruntime's profile file: a JSON array of Chrome-trace events, one event per line.

onnxruntime writes ``[`` on the first line, then one ``"ph": "X"`` event per line (keys in
the order cat, pid, tid, dur, ts, ph, name, args; times in integer microseconds since the
profiling start), then ``]``.  We write the same layout, spacing included, so that tools
that read onnxruntime profiles (and Perfetto, chrome://tracing, ``json.load``) read ours.
"""
from __future__ import annotations

import json
import time

import numpy as np

# Element-type names as onnxruntime prints them in input_type_shape / output_type_shape.
_TYPE_NAMES = {"float32": "float", "float64": "double", "object": "string", "str": "string",
               "bool": "bool"}


def type_name(dtype) -> str:
    """onnxruntime's name of a tensor element type: float, double, int64, float16, string, ..."""
    name = np.dtype(dtype).name
    if name.startswith("str") or name.startswith("bytes"):
        return "string"
    return _TYPE_NAMES.get(name, name)


def file_path(prefix: str, start_ns: int) -> str:
    """``<prefix>_<local date and time>_<milliseconds>.json``, as onnxruntime names the file."""
    seconds, rest = divmod(start_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(seconds))
    return f"{prefix}_{stamp}_{rest // 1_000_000:03d}.json"


def _value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    return json.dumps(v, separators=(",", ":"))


def format_event(e: dict) -> str:
    """One event on one line, in onnxruntime's key order and spacing."""
    head = (f'{{"cat" : {json.dumps(e["cat"])},"pid" :{e["pid"]},"tid" :{e["tid"]},'
            f'"dur" :{e["dur"]},"ts" :{e["ts"]},"ph" : {json.dumps(e["ph"])},'
            f'"name" :{json.dumps(e["name"])}')
    extra = "".join(f',{json.dumps(k)} :{_value(v)}' for k, v in e.items()
                    if k not in _HEAD_KEYS and k != "args")
    args = ",".join(f"{json.dumps(k)} : {_value(v)}" for k, v in e.get("args", {}).items())
    return f'{head}{extra},"args" : {{{args}}}}}'


_HEAD_KEYS = ("cat", "pid", "tid", "dur", "ts", "ph", "name")


def write_trace(events: list[dict], path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        f.write(",\n".join(format_event(e) for e in events))
        f.write("\n]\n")
    return path


def read_trace(path_or_events) -> list[dict]:
    """The events of a trace file (ours or onnxruntime's); a list of events passes through."""
    if isinstance(path_or_events, list):
        return path_or_events
    with open(path_or_events, encoding="utf-8") as f:
        data = json.load(f)
    # Chrome's object form {"traceEvents": [...]} is accepted too.
    return data["traceEvents"] if isinstance(data, dict) else data
