"""The coverage table's list of onnxruntime's CPU com.microsoft ops is complete for the installed
onnxruntime (its own kernel registry, get_all_opkernel_def), and every one of them has an ortgpu
CPU kernel except those named in LEFT_OUT, each with its reason."""
from __future__ import annotations

from onnxruntime.capi import _pybind_state as ort_c

from ortgpu.coverage import ORT_CPU_MS_OPS, contrib_rows

LEFT_OUT = {
    "GatherPacked": "new in onnxruntime 1.32: its block-packed byte layouts are defined in onnxruntime's "
                    "PackedWeightFormats.md, which is not in the stored reference material",
}


def test_listed_ops_cover_onnxruntimes_cpu_registry():
    registered = {k.op_name for k in ort_c.get_all_opkernel_def()
                  if k.domain == "com.microsoft" and k.provider == "CPUExecutionProvider"}
    missing = sorted(registered - set(ORT_CPU_MS_OPS))
    assert not missing, f"onnxruntime's CPU provider registers com.microsoft ops the coverage list lacks: {missing}"


def test_every_cpu_op_has_a_kernel_or_a_stated_reason():
    rows = [r for r in contrib_rows() if r["domain"] == "com.microsoft" and r["ort"] == "CPU"]
    without = {r["op"] for r in rows if not ({"cpu", "shared"} & set(r["providers"]))}
    assert without == set(LEFT_OUT), (f"without a kernel and unexplained: {sorted(without - set(LEFT_OUT))}; "
                                      f"listed as left out but implemented: {sorted(set(LEFT_OUT) - without)}")
