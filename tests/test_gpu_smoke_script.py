"""scripts/gpu_smoke.py (the first step of scripts/gpu-check.sh) on the device double: every family
model runs on the device and matches ortgpu's CPU provider; a broken provider shows as ERROR;
CUDA missing is said, not mistaken for a pass."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import gpu_smoke  # noqa: E402


def test_every_family_runs_on_the_double_and_matches_the_cpu_provider(tmp_path, capsys):
    out = tmp_path / "smoke.jsonl"
    assert gpu_smoke.main(["--double", "--json", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["family"] for r in rows] == [name for name, _ in gpu_smoke.FAMILIES]
    for r in rows:
        assert r["status"] == "ok" and int(r["device_nodes"].split("/")[0]) > 0, r
    assert len(capsys.readouterr().out.splitlines()) == len(rows) + 1  # one line per family + total


def test_a_failing_provider_is_an_error_line_and_cuda_missing_is_not_a_pass(capsys):
    row = gpu_smoke.run_family("gemm", gpu_smoke.gemm, lambda: ["NoSuchExecutionProvider"],
                               lambda: ["CPUExecutionProvider"])
    assert row["status"] in ("ERROR", "FAIL")
    import ortgpu
    if "CUDAExecutionProvider" not in ortgpu.get_available_providers():
        assert gpu_smoke.main([]) == 2
        assert "not available" in capsys.readouterr().out
    else:
        pytest.skip("CUDA is available here: the smoke step really runs")
