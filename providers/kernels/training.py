"""Optimizer steps of the ai.onnx.preview.training domain: Adagrad, Adam, Momentum.

Inputs are R (learning rate), T (update count), then the optimized tensors grouped by role
(all X, then all G, then all H/V...); outputs come grouped the same way (all X_new, then ...).
"""
from ortgpu.providers.registry import kernel

TRAINING = "ai.onnx.preview.training"


def _groups(inputs, k, op):
    if len(inputs) % k:
        raise ValueError(f"{op} expects its tensor inputs in {k} groups of equal size, got {len(inputs)}")
    n = len(inputs) // k
    return [inputs[i * n:(i + 1) * n] for i in range(k)]


@kernel("Adagrad", since=1, domain=TRAINING,
        types={"T1": frozenset({"float32", "float64"}),
               "T2": frozenset({"int64"}),
               "T3": frozenset({"float32", "float64"})})
def Adagrad(ctx, R, T, *inputs, decay_factor=0.0, epsilon=1e-6, norm_coefficient=0.0):
    """One ADAGRAD step per tensor: outputs all X_new, then all H_new."""
    xp = ctx.xp
    X, G, H = _groups(inputs, 3, "Adagrad")
    r = R / (1 + T * decay_factor)
    xs, hs = [], []
    for x, g, h in zip(X, G, H):
        g = norm_coefficient * x + g
        h_new = h + g * g
        xs.append((x - r * g / (xp.sqrt(h_new) + epsilon)).astype(x.dtype))
        hs.append(h_new.astype(h.dtype))
    return tuple(xs + hs)


@kernel("Adam", since=1, domain=TRAINING,
        types={"T1": frozenset({"float32", "float64"}),
               "T2": frozenset({"int64"}),
               "T3": frozenset({"float32", "float64"})})
def Adam(ctx, R, T, *inputs, alpha=0.9, beta=0.999, epsilon=1e-6, norm_coefficient=0.0,
         norm_coefficient_post=0.0):
    """One Adam step per tensor (bias-corrected rate once T > 0): outputs all X, then all V, then all H."""
    xp = ctx.xp
    X, G, V, H = _groups(inputs, 4, "Adam")
    t = float(T)
    r = R * xp.sqrt(1 - beta ** t) / (1 - alpha ** t) if t > 0 else R
    xs, vs, hs = [], [], []
    for x, g, v, h in zip(X, G, V, H):
        g = norm_coefficient * x + g
        v_new = alpha * v + (1 - alpha) * g
        h_new = beta * h + (1 - beta) * g * g
        x_new = x - r * v_new / (xp.sqrt(h_new) + epsilon)
        xs.append(((1 - norm_coefficient_post) * x_new).astype(x.dtype))
        vs.append(v_new.astype(v.dtype))
        hs.append(h_new.astype(h.dtype))
    return tuple(xs + vs + hs)


@kernel("Momentum", since=1, domain=TRAINING,
        types={"T1": frozenset({"float32", "float64"}),
               "T2": frozenset({"int64"}),
               "T3": frozenset({"float32", "float64"})})
def Momentum(ctx, R, T, *inputs, alpha, beta, mode, norm_coefficient):
    """One SGD step with 'standard' or 'nesterov' momentum (beta is 1 when T == 0): all X, then all V."""
    X, G, V = _groups(inputs, 3, "Momentum")
    if mode not in ("standard", "nesterov"):
        raise ValueError(f"Momentum mode must be 'standard' or 'nesterov', got {mode!r}")
    b = beta if float(T) > 0 else 1.0
    xs, vs = [], []
    for x, g, v in zip(X, G, V):
        g = norm_coefficient * x + g
        v_new = alpha * v + b * g
        step = g + alpha * v_new if mode == "nesterov" else v_new
        xs.append((x - R * step).astype(x.dtype))
        vs.append(v_new.astype(v.dtype))
    return tuple(xs + vs)
