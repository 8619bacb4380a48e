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

# onnxruntime's contrib domain: a fusion whose result onnxruntime defines as an op there
# (Gelu, FastGelu, BiasGelu, SkipLayerNormalization, Attention, FusedConv, FusedGemm) writes
# that op, with onnxruntime's inputs, attributes and outputs, so a saved optimized model runs
# in onnxruntime as it is (no function body); the ortgpu domain is for the rest.
MS_DOMAIN = "com.microsoft"
MS_VERSION = 1


def ms_takes(elem_type: int | None) -> bool:
    """Whether a fusion over tensors of `elem_type` writes onnxruntime's op: float32, the type
    onnxruntime's CPU provider runs every one of these ops for, so the saved model runs in any
    onnxruntime.  Other float types keep the ortgpu op, whose function body onnxruntime inlines."""
    return elem_type == onnx.TensorProto.FLOAT

# The activations onnxruntime's FusedConv (MLAS activation kinds) and FusedGemm (its
# element-wise activation functors) take; a fusion with another activation (HardSwish, and
# Clip for Gemm) keeps the ortgpu op, which has a function body.
MS_CONV_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Clip"})
MS_GEMM_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid"})


def ms_activation_attrs(op_type: str, activation: str, params) -> dict | None:
    """The activation attributes of onnxruntime's com.microsoft `op_type` (FusedConv:
    ``activation_params``; FusedGemm: ``activation_alpha`` / ``activation_beta``), or None
    when onnxruntime's op does not take that activation."""
    params = [float(p) for p in params or ()]
    if op_type == "FusedConv" and activation in MS_CONV_ACTIVATIONS:
        return {"activation": activation, **({"activation_params": params} if params else {})}
    if op_type == "FusedGemm" and activation in MS_GEMM_ACTIVATIONS:
        names = ("activation_alpha", "activation_beta")
        return {"activation": activation, **dict(zip(names, params))}
    return None

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
