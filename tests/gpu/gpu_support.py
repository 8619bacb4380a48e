"""Helpers of the GPU tier: whether CUDA can run here, provider lists, placement counts, reports."""
from __future__ import annotations

import collections
import json
import os

import pytest

import ortgpu

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Strict float32 on the GPU for the accuracy comparisons (TF32 would need looser tolerances).
CUDA_OPTIONS = {"use_tf32": "0"}


def has_cuda() -> bool:
    try:
        return CUDA in ortgpu.get_available_providers()
    except Exception:  # a broken CUDA install must skip the tier, not break collection
        return False


# Every GPU test module sets `pytestmark = gpu_marks()`.
def gpu_marks():
    return [pytest.mark.gpu,
            pytest.mark.skipif(not has_cuda(), reason="CUDAExecutionProvider is not available "
                                                      "(no CuPy or no GPU)")]


def cuda_session(model, **kwargs):
    return ortgpu.InferenceSession(model, providers=[(CUDA, dict(CUDA_OPTIONS)), CPU], **kwargs)


def cpu_session(model, **kwargs):
    return ortgpu.InferenceSession(model, providers=[CPU], **kwargs)


def is_copy(op_type: str) -> bool:
    return "Memcpy" in op_type or "Copy" in op_type


def assignment(session) -> list[tuple[str, str, str]]:
    """(step name, op type, provider) of every step, those inside If/Loop/Scan bodies included."""
    try:
        return session.get_provider_assignment(include_subgraphs=True)
    except TypeError:  # a session API without the keyword: top-level steps only
        return session.get_provider_assignment()


def placement_counts(session) -> dict:
    """Steps of a session (subgraph steps included) by where they run: {"gpu", "cpu", "copy",
    "cpu_ops"}, where cpu_ops counts the op types that stayed on the CPU."""
    gpu = cpu = copies = 0
    cpu_ops: collections.Counter = collections.Counter()
    for _, op, provider in assignment(session):
        if is_copy(op):
            copies += 1
        elif provider == CUDA:
            gpu += 1
        else:
            cpu += 1
            cpu_ops[op] += 1
    return {"gpu": gpu, "cpu": cpu, "copy": copies, "cpu_ops": dict(cpu_ops)}


def write_report(filename: str, data) -> str | None:
    """Write `data` as JSON into $ORTGPU_REPORT_DIR (if set); returns the path written."""
    folder = os.environ.get("ORTGPU_REPORT_DIR")
    if not folder:
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, filename)
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True, default=str)
    return path
