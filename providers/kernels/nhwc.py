"""``ortgpu::NhwcConv``: a 2-D convolution on channels-last tensors, made by the optimizer's
NhwcTransformer (layout level) for providers that run convolutions faster that way.

Layouts: X is NHWC, W is OHWI (output channels, kernel height, kernel width, input channels
per group; the pass transposes the constant weight once), B is per output channel, and Y is
NHWC.  Attributes are Conv's, with Conv's meanings.  The shared kernel here views the data
as NCHW and runs the shared Conv: it is the oracle of the cuDNN kernel (providers/cuda/
cudnn.py), which reads the channels-last memory directly.
"""
from __future__ import annotations

from ortgpu.providers.dtype_sets import FLOATS
from ortgpu.providers.kernels.conv import conv_float
from ortgpu.providers.registry import kernel

OP_TYPE = "NhwcConv"
DOMAIN = "ortgpu"
TO_NHWC = (0, 2, 3, 1)   # NCHW -> NHWC
TO_NCHW = (0, 3, 1, 2)   # NHWC -> NCHW


@kernel(OP_TYPE, since=1, domain=DOMAIN, types={"*": FLOATS})
def NhwcConv(ctx, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
             pads=None, strides=None):
    """Conv of NHWC X with OHWI W, giving NHWC Y (through the NCHW shared convolution)."""
    y = conv_float(ctx, X.transpose(TO_NCHW), W.transpose(TO_NCHW), B, auto_pad, dilations, group,
                   kernel_shape, pads, strides)
    return ctx.xp.ascontiguousarray(y.transpose(TO_NHWC))
