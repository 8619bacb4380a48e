"""Every version of every ai.onnx op that the installed onnx defines has a kernel, or an
ONNX function body the executor can expand; the coverage table in docs/ is current."""
import os

import onnx

from ortgpu.coverage import coverage, markdown

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "OperatorKernels.md")


def test_every_ai_onnx_version_is_implemented_or_expandable():
    gaps = [(r["op"], r["missing"]) for r in coverage()
            if r["domain"] == "ai.onnx" and r["missing"] and not r["function"]]
    assert gaps == [], f"ai.onnx ops without a kernel (onnx {onnx.__version__}): {gaps}"


def test_coverage_doc_is_current():
    with open(DOC, encoding="utf-8") as f:
        assert f.read() == markdown(), "regenerate with: python -m ortgpu.coverage > docs/OperatorKernels.md"
