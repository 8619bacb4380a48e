"""The operator catalogue as onnxruntime's C module exposes it: get_all_opkernel_def (one
KernelDef per registered kernel and provider) and get_all_operator_schema (the ONNX schemas
the kernels implement), with the ``opkernel`` and ``schemadef`` submodules that hold the types."""
from __future__ import annotations

import types

import onnx.defs

from ortgpu.dtypes import onnx_code, tensor_type_str


class KernelDef:
    """One kernel: op name, domain, (first, last) opset, provider, and the tensor types per
    type constraint, as onnxruntime's opkernel.KernelDef reports them."""

    def __init__(self, op_name: str, domain: str, version_range: tuple[int, int], provider: str,
                 type_constraints: dict[str, list[str]]):
        self.op_name, self.domain, self.version_range = op_name, domain, version_range
        self.provider, self.type_constraints = provider, type_constraints

    def __repr__(self):
        return f"KernelDef({self.domain or 'ai.onnx'}::{self.op_name} {self.version_range} {self.provider})"


_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"],
              "shared": ["CPUExecutionProvider", "CUDAExecutionProvider"]}
_MAX_OPSET = 2 ** 31 - 1


def _types(k) -> dict[str, list[str]]:
    out = {}
    for constraint, names in (k.types or {}).items():
        strs = []
        for name in sorted(names):
            try:
                strs.append(tensor_type_str(onnx_code(name)))
            except (TypeError, ValueError, KeyError):
                continue
        out[constraint] = strs
    return out


def get_all_opkernel_def() -> list[KernelDef]:
    """A KernelDef per registered kernel and provider that runs it; a kernel's version range
    ends where the next registration of the same op and provider starts."""
    from ortgpu.providers.registry import registered  # noqa: PLC0415
    regs = registered()
    starts: dict[tuple, list[int]] = {}
    for k in regs:
        starts.setdefault((k.domain, k.op_type, k.provider), []).append(k.since)
    out = []
    for k in regs:
        later = [v for v in starts[(k.domain, k.op_type, k.provider)] if v > k.since]
        end = min(later) - 1 if later else _MAX_OPSET
        for provider in _PROVIDERS.get(k.provider, [k.provider]):
            out.append(KernelDef(k.op_type, k.domain, (k.since, end), provider, _types(k)))
    return out


def get_all_operator_schema() -> list:
    """Every ONNX operator schema (all versions) onnx knows; onnxruntime adds its contrib
    schemas to the same list, ortgpu reports onnx's."""
    return list(onnx.defs.get_all_schemas_with_history())


opkernel = types.ModuleType("ortgpu.capi.onnxruntime_pybind11_state.opkernel",
                            "Kernel definitions (KernelDef) of get_all_opkernel_def().")
opkernel.KernelDef = KernelDef
schemadef = types.ModuleType("ortgpu.capi.onnxruntime_pybind11_state.schemadef",
                             "Operator schemas (OpSchema, onnx's) of get_all_operator_schema().")
schemadef.OpSchema = onnx.defs.OpSchema
