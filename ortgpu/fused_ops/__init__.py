"""The fused ops that the optimizer's passes create.  Where onnxruntime defines the fused op
in com.microsoft (or, for LayerNormalization below opset 17, in ai.onnx) the passes write
that op with onnxruntime's semantics; the ops of the ``ortgpu`` domain, for fusions
onnxruntime has no op for, are defined here as ONNX functions: the registry (:mod:`.registry`) and the body of every fused op (:mod:`.bodies`
for the pattern fusions, :mod:`.elementwise`, :mod:`.nhwc_conv`).  Importing this package
registers them all, so the loader, the executor and the model writer find every body
whether or not the optimizer ran."""
from __future__ import annotations

from ortgpu.fused_ops import bodies, elementwise, nhwc_conv  # noqa: F401  (register the bodies)
from ortgpu.fused_ops.bodies import body_supports
from ortgpu.fused_ops.registry import (DOMAIN, DOMAIN_VERSION, FUNCTIONS, MS_DOMAIN, MS_VERSION, fused_body,
                                      kept_on_load, ms_activation_attrs, ms_takes, register)

__all__ = ["DOMAIN", "DOMAIN_VERSION", "FUNCTIONS", "MS_DOMAIN", "MS_VERSION", "body_supports", "fused_body",
           "kept_on_load", "ms_activation_attrs", "ms_takes", "register"]
