"""Write results-<step>.json for scripts/gpu-check.sh, right after the step ends.

    python scripts/gpu_check_results.py OUT STEP     (step records in $GPU_CHECK_STEPS:
                                                       "name exit seconds" per line)

The file holds the date, the commit ($ORTGPU_COMMIT, else `git rev-parse HEAD` when git works),
the records of the setup steps and of STEP, and what STEP produced, parsed: the smoke lines,
the junit counts and failing test ids, the backend suite summary, the benchmark rows.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

SETUP = {"nvidia-smi", "versions", "carried-wheels", "install", "providers"}


def commit() -> str:
    env = os.environ.get("ORTGPU_COMMIT")
    if env:
        return env
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - no git on the machine, or no repository
        return "unknown"


def junit(path: str) -> dict:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    res = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    res["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
                     if c.find("failure") is not None or c.find("error") is not None][:50]
    return res


def parsed(out: str, step: str) -> dict:
    res = {}
    path = os.path.join(out, f"junit-{step}.xml")
    if os.path.exists(path):
        res["pytest"] = junit(path)
    if step == "smoke" and os.path.exists(os.path.join(out, "smoke.jsonl")):
        res["smoke"] = [json.loads(line) for line in open(os.path.join(out, "smoke.jsonl")) if line.strip()]
    if step == "suite" and os.path.exists(os.path.join(out, "gpu_backend_suite.json")):
        s = dict(json.load(open(os.path.join(out, "gpu_backend_suite.json"))).get("summary", {}))
        s.pop("cuda_failures", None)
        res["backend_suite"] = s
    if step == "bench" and os.path.exists(os.path.join(out, "bench_gpu.json")):
        data = json.load(open(os.path.join(out, "bench_gpu.json")))
        res["bench"] = {"device": data.get("device"), "failures": data.get("failures"),
                        "rows": [{k: r.get(k) for k in ("model", "batch", "ortgpu_ms", "torch_ms", "ratio",
                                                         "ratio_without_transfer", "host_us_per_node")}
                                 for r in data.get("results", [])]}
    if step == "memory" and os.path.exists(os.path.join(out, "bench_memory.json")):
        res["memory"] = json.load(open(os.path.join(out, "bench_memory.json"))).get("gpu")
    if step == "optbench" and os.path.exists(os.path.join(out, "bench_optimizer.json")):
        res["optimizer"] = [{k: r.get(k) for k in ("model", "level", "nodes", "launches", "ms")}
                            for r in json.load(open(os.path.join(out, "bench_optimizer.json"))).get("rows", [])]
    return res


def main(argv) -> int:
    out, step = argv[1], argv[2]
    records = []
    for line in os.environ.get("GPU_CHECK_STEPS", "").splitlines():
        if line.strip():
            name, rc, secs = line.rsplit(" ", 2)
            records.append({"step": name, "exit": int(rc), "seconds": int(secs)})
    mine = [r for r in records if r["step"] == step]
    res = {"step": step, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "commit": commit(), "setup": [r for r in records if r["step"] in SETUP], "records": mine,
           "ok": bool(mine) and all(r["exit"] == 0 for r in mine)}
    res.update(parsed(out, step))
    with open(os.path.join(out, f"results-{step}.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k in ("step", "ok", "records", "pytest")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
