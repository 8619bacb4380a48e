"""The registry of the fused ops that optimizer passes create, in the ``ortgpu`` domain.

Each fused op registers a builder of its ONNX function body here (a ``FunctionProto`` in
domain :data:`DOMAIN` written with primitive ai.onnx ops).  Saving an optimized model
(``SessionOptions.optimized_model_filepath``) puts the bodies of the fused ops it uses into
``ModelProto.functions``, so the file passes ``onnx.checker`` and any ONNX tool can run it;
ortgpu itself, loading such a file, keeps a fused node as it is when a kernel is
registered for it and expands the body otherwise.
"""
from __future__ import annotations

from collections.abc import Callable

import onnx

DOMAIN = "ortgpu"
DOMAIN_VERSION = 1

# op type -> function returning the op's body; the builder takes the node (for its
# attributes and input/output counts) and the model's ai.onnx opset version.
FUNCTIONS: dict[str, Callable[..., onnx.FunctionProto]] = {}


def register(op_type: str):
    """Decorator: ``fn(node, opset) -> FunctionProto`` is the body of ``ortgpu::op_type``."""
    def add(fn):
        if op_type in FUNCTIONS:
            raise ValueError(f"fused op {op_type} registered twice")
        FUNCTIONS[op_type] = fn
        return fn
    return add


def fused_body(node, opsets: dict[str, int]) -> onnx.FunctionProto | None:
    """The function body of a fused ``ortgpu`` node (None for any other node), for running it
    where no provider has a kernel for it."""
    if node.domain != DOMAIN or node.op_type not in FUNCTIONS:
        return None
    return FUNCTIONS[node.op_type](node, opsets.get("", 1))


def kept_on_load() -> list[tuple[str, str]]:
    """(domain, op type) of the fused ops that have a kernel: a model-local function of that
    name stays a node when a model is loaded (the others are inlined)."""
    from ortgpu.providers.registry import registered  # noqa: PLC0415
    return sorted({(k.domain, k.op_type) for k in registered() if k.domain == DOMAIN})
