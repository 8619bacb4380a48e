"""Control flow: If, Loop, Scan, SequenceMap.

Subgraph attributes arrive as callables (executor.BoundGraph) already bound to the
outer-scope values they read: ``body(*inputs) -> sequence of outputs``.
"""
import sys

import numpy as np

from ortgpu.errors import Fail
from ortgpu.providers.dtype_sets import ALL, BOOL, CUPY, FLOAT6, STRING
from ortgpu.providers.registry import CONTROL_FLOW, kernel

_CF_VERSIONS = (1, 11, 13, 16, 19, 21, 23, 24, 25)


def _empty_like_type(ctx, i):
    """A zero-length tensor for output i of a loop that ran no iteration."""
    tp = ctx.output_types[i] if i < len(ctx.output_types) else None
    dtype = ctx.output_dtype(i) or np.float32
    shape = [0]
    if tp is not None and tp.tensor_type.HasField("shape"):
        dims = tp.tensor_type.shape.dim
        shape = [0] + [d.dim_value if d.HasField("dim_value") else 0 for d in list(dims)[1:]]
    return ctx.xp.zeros(shape, dtype=dtype)


def _truth(xp, cond) -> bool:
    """A condition's truth: its one element (a NumPy scalar read directly, the hot path)."""
    if type(cond) is np.ndarray and cond.size == 1:
        return bool(cond.item())
    if cond is None:
        return True
    return bool(np.asarray(cond).reshape(-1)[0])


def _trip_count(M):
    """Loop's maximum trip count as an int (None: no limit)."""
    if M is None:
        return None
    if type(M) is np.ndarray and M.size == 1:
        return int(M.item())
    return int(np.asarray(M).reshape(-1)[0])


def _plain_runner(body):
    """(fn(i, cond, carried) -> outputs, uses i, uses cond) for a body that is a plain callable
    (an executor-bound body gives its own fast one: executor.BoundGraph.loop_runner)."""
    return (lambda i, c, carried: body(i, c, *carried)), True, True


def _frozen(value):
    a = np.array(value)
    a.flags.writeable = False
    return a


# Tensors a Loop hands its body, shared by every iteration and every run: read-only, so that
# no kernel can change them and a run copies one before returning it (RunCore._unshared).
_TRUE = _frozen(True)
_N_CACHED = 1024
_ITERATION = tuple(_frozen(np.int64(k)) for k in range(_N_CACHED))


def if_takes_then(cond) -> bool:
    """Whether an If with condition `cond` runs its then-branch.  The condition must hold
    exactly one element (onnxruntime's Fail otherwise; a tensor of several is not a truth
    value).  The executor calls this directly and runs the chosen branch's plan itself
    (executor._if_call): no bound subgraph is built for the branch it does not run."""
    if type(cond) is np.ndarray and cond.size == 1:  # the hot path: one host bool
        return bool(cond.item())
    size = int(np.prod(getattr(cond, "shape", ())))
    if size != 1:
        raise Fail(f"If nodes condition input must have exactly one element; it has shape "
                   f"{list(getattr(cond, 'shape', ()))}")
    return _truth(np, cond)


@kernel("If", since=_CF_VERSIONS, types={"V": ALL - FLOAT6, "B": BOOL}, host_inputs=(0,),
        capturable=CONTROL_FLOW)
def If(ctx, cond, *, then_branch, else_branch):
    """Run one branch; its outputs are the node's outputs (see if_takes_then)."""
    branch = then_branch if if_takes_then(cond) else else_branch
    return tuple(branch())


If.branch_select = if_takes_then  # the executor's fast path for this kernel (executor._if_call)


@kernel("Loop", since=_CF_VERSIONS, types={"V": ALL - FLOAT6, "I": frozenset({"int64"}), "B": BOOL},
        host_inputs=(0, 1), capturable=CONTROL_FLOW)
def Loop(ctx, M=None, cond=None, *v_initial, body):
    """Run `body` while iterations < M and cond holds; carried values and stacked scan outputs.

    The hot loop does per iteration only what the body needs: the iteration number and the
    condition are handed over only when the body uses them (shared read-only tensors, a fresh
    one past the cached iteration numbers), a condition passed through unchanged is not read
    again, and the body's value list is reused (executor.BoundGraph.loop_runner)."""
    if type(M) is np.ndarray and M.size == 1:  # scalars read directly: the hot path
        limit = M.item()
    else:
        limit = _trip_count(M)
        if limit is None:
            limit = sys.maxsize
    keep_going = True if cond is None else _truth(ctx.xp, cond)
    n_carried = len(v_initial)
    n_scan = ctx.num_outputs - n_carried
    scans: list[list] = [[] for _ in range(n_scan)] if n_scan else []
    carried = v_initial
    make = getattr(body, "loop_runner", None)
    run, with_i, with_cond = make() if make is not None else _plain_runner(body)
    c_in = _TRUE if with_cond else None  # the condition while the loop runs
    i = 0
    while keep_going and i < limit:
        outs = run((_ITERATION[i] if i < _N_CACHED else np.array(i, dtype=np.int64)) if with_i else None,
                   c_in, carried)
        c_out = outs[0]
        if c_out is not c_in:
            keep_going = _truth(ctx.xp, c_out)
        if n_scan:
            carried = outs[1:1 + n_carried]
            for k in range(n_scan):
                scans[k].append(outs[1 + n_carried + k])
        else:
            carried = outs[1:]
        i += 1
    if not n_scan:
        return carried if type(carried) is tuple else tuple(carried)
    stacked = [ctx.xp.stack(s) if s else _empty_like_type(ctx, n_carried + k) for k, s in enumerate(scans)]
    return (*carried, *stacked)


def _scan(ctx, body, states, scan_inputs, in_axes, in_dirs, out_axes, out_dirs):
    xp = ctx.xp
    n_state = len(states)
    n_scan_out = ctx.num_outputs - n_state
    inputs = [xp.moveaxis(x, ax, 0) for x, ax in zip(scan_inputs, in_axes)]
    length = inputs[0].shape[0] if inputs else 0
    per_step: list[list] = [[] for _ in range(n_scan_out)]
    for t in range(length):
        slices = [x[length - 1 - t] if d else x[t] for x, d in zip(inputs, in_dirs)]
        outs = body(*states, *slices)
        states = list(outs[:n_state])
        for k in range(n_scan_out):
            per_step[k].append(outs[n_state + k])
    results = list(states)
    for k in range(n_scan_out):
        seq = per_step[k][::-1] if out_dirs[k] else per_step[k]
        if not seq:
            results.append(_empty_like_type(ctx, n_state + k))
            continue
        y = xp.stack(seq)
        ax = out_axes[k]
        if ax < 0:
            ax += y.ndim
        results.append(xp.moveaxis(y, 0, ax))
    return tuple(results)


@kernel("Scan", since=(9, 11, 16, 19, 21, 23, 24, 25), types={"V": ALL - FLOAT6}, capturable=CONTROL_FLOW)
def Scan(ctx, *initial_state_and_scan_inputs, body, num_scan_inputs, scan_input_axes=None,
         scan_input_directions=None, scan_output_axes=None, scan_output_directions=None):
    """Iterate `body` over slices of the scan inputs, threading the state values through."""
    vals = list(initial_state_and_scan_inputs)
    n_state = len(vals) - num_scan_inputs
    states, scan_inputs = vals[:n_state], vals[n_state:]
    n_out = ctx.num_outputs - n_state
    in_axes = [a if a >= 0 else a + x.ndim for a, x in zip(scan_input_axes or [0] * num_scan_inputs, scan_inputs)]
    in_dirs = scan_input_directions or [0] * num_scan_inputs
    out_axes = scan_output_axes or [0] * n_out
    out_dirs = scan_output_directions or [0] * n_out
    return _scan(ctx, body, states, scan_inputs, in_axes, in_dirs, out_axes, out_dirs)


@kernel("Scan", since=8, types={"I": frozenset({"int64"}), "V": CUPY | STRING}, host_inputs=(0,),
        capturable=CONTROL_FLOW)
def Scan8(ctx, sequence_lens, *initial_state_and_scan_inputs, body, num_scan_inputs, directions=None):
    """Opset-8 Scan: a batch axis 0 and the scan axis 1; per-batch sequence lengths."""
    xp = ctx.xp
    vals = list(initial_state_and_scan_inputs)
    n_state = len(vals) - num_scan_inputs
    states, scan_inputs = vals[:n_state], vals[n_state:]
    batch = scan_inputs[0].shape[0]
    dirs = directions or [0] * num_scan_inputs
    n_out = ctx.num_outputs - n_state
    per_batch = []
    for b in range(batch):
        length = scan_inputs[0].shape[1] if sequence_lens is None else int(sequence_lens[b])
        res = _scan(ctx, body, [s[b] for s in states], [x[b, :length] for x in scan_inputs],
                    [0] * num_scan_inputs, dirs, [0] * n_out, [0] * n_out)
        per_batch.append(res)
    return tuple(xp.stack([r[k] for r in per_batch]) for k in range(ctx.num_outputs))


@kernel("SequenceMap", since=17, types={"S": CUPY | STRING, "V": CUPY | STRING}, capturable=CONTROL_FLOW)
def SequenceMap(ctx, input_sequence, *additional_inputs, body):
    """Apply `body` to each element (sequence arguments are walked in step); one sequence per output."""
    n = len(input_sequence)
    outs: list[list] = [[] for _ in range(ctx.num_outputs)]
    for i in range(n):
        args = [input_sequence[i]] + [a[i] if isinstance(a, list) else a for a in additional_inputs]
        for k, v in enumerate(body(*args)):
            outs[k].append(v)
    return tuple(outs)
