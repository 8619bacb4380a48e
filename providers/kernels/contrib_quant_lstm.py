"""DynamicQuantizeLSTM of onnxruntime's com.microsoft domain: an LSTM whose W and R are int8/uint8
with per-direction or per-column scales and zero points, laid out [directions, input, 4*hidden].

The weights are dequantized and the ai.onnx LSTM (rnn.py) runs in float32; onnxruntime also
quantizes the input and hidden state at each step, so its results differ slightly.
"""
from __future__ import annotations

from ortgpu.errors import InvalidArgument
from ortgpu.providers.kernels.rnn import LSTM
from ortgpu.providers.registry import kernel

MS = "com.microsoft"


def _dequantize_gates(xp, w, scale, zero_point, name):
    """[D, in, 4H] integers -> float32 [D, 4H, in], the layout of ai.onnx LSTM's W and R."""
    d, _, cols = w.shape
    if scale.size not in (d, d * cols):
        raise InvalidArgument(f"DynamicQuantizeLSTM: {name}_scale has {scale.size} values, expected {d} "
                         f"(per direction) or {d * cols} (per column)")
    s = scale.astype(xp.float32).reshape(d, 1, -1)
    z = zero_point.astype(xp.float32).reshape(d, 1, -1)
    return ((w.astype(xp.float32) - z) * s).transpose(0, 2, 1)


@kernel("DynamicQuantizeLSTM", since=1, domain=MS,
        types={"*": frozenset({"float32", "int8", "uint8", "int32"})})
def DynamicQuantizeLSTM(ctx, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None,
                        W_scale=None, W_zero_point=None, R_scale=None, R_zero_point=None, *,
                        activation_alpha=None, activation_beta=None, activations=None, clip=None,
                        direction="forward", hidden_size=None, input_forget=0):
    """LSTM over dequantized weights (gates i, o, f, c as in ai.onnx LSTM), dequantized once per
    session when they are initializers."""
    xp = ctx.xp
    w = ctx.prepared("W", (1, 8, 9), (W, W_scale, W_zero_point),
                     lambda: _dequantize_gates(xp, W, W_scale, W_zero_point, "W"))
    r = ctx.prepared("R", (2, 10, 11), (R, R_scale, R_zero_point),
                     lambda: _dequantize_gates(xp, R, R_scale, R_zero_point, "R"))
    return LSTM(ctx, X, w, r, B, sequence_lens, initial_h, initial_c, P, activation_alpha=activation_alpha,
                activation_beta=activation_beta, activations=activations, clip=clip, direction=direction,
                hidden_size=hidden_size, input_forget=input_forget)
