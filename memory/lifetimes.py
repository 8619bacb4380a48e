"""Tensor lifetimes of one run of an executor plan, for planning and for the memory benchmark.

``run_lifetimes(plan, inputs)`` runs the plan once with every step's kernel wrapped, and
returns one ``Interval`` per buffer a step created, in steps of the plan:

* a step output that shares its buffer with an input of the step (Reshape, Identity, a
  view) is not a new tensor: it extends the life of the buffer it views;
* a buffer lives from the step that created it to the last step that reads any value
  viewing it (the step whose release list holds it); graph outputs live to the end;
* initializers, graph inputs, sequences and scalars are not tracked, and neither are the
  temporaries a kernel creates and drops inside itself, nor the values of subgraphs (a step
  with If/Loop/Scan counts as one kernel).

The plan's kernels are swapped for wrappers during the run and put back afterwards: use it on
a plan no other thread is running.
"""
from __future__ import annotations

import weakref

import numpy as np

from ortgpu.memory.planner import Interval


def _root(value) -> np.ndarray:
    """The array that owns the memory a NumPy value views."""
    while isinstance(value.base, np.ndarray):
        value = value.base
    return value


class _Tracker:
    """Buffers seen during the run: root array (by weak reference) -> tensor index."""

    def __init__(self):
        self.roots: dict[int, tuple[weakref.ref, int]] = {}
        self.sizes: list[int] = []
        self.firsts: list[int] = []
        self.lasts: list[int] = []
        self.names: list[str] = []

    def known(self, root) -> int | None:
        entry = self.roots.get(id(root))
        if entry is not None and entry[0]() is root:
            return entry[1]
        return None

    def add(self, root, step: int, name: str) -> int:
        t = len(self.sizes)
        self.roots[id(root)] = (weakref.ref(root), t)
        self.sizes.append(int(root.nbytes))
        self.firsts.append(step)
        self.lasts.append(step)
        self.names.append(name)
        return t


def run_lifetimes(plan, inputs: list) -> list[Interval]:
    """Intervals of the buffers one run of ``plan`` (an ortgpu.executor.Plan) creates."""
    tracker = _Tracker()
    untracked = {id(_root(v)) for v in plan.template if isinstance(v, np.ndarray)}
    untracked |= {id(_root(v)) for v in inputs if isinstance(v, np.ndarray)}
    slot_tensor: dict[int, int] = {}
    originals = [st.fn for st in plan.steps]

    def wrap(i, st, fn):
        def traced(ctx, *args, **kwargs):
            res = fn(ctx, *args, **kwargs)
            outs = res if type(res) is tuple else (res,)
            for s, v in zip(st.outs, outs):
                if s < 0 or not isinstance(v, np.ndarray):
                    continue
                root = _root(v)
                t = tracker.known(root)
                if t is None and id(root) not in untracked:
                    t = tracker.add(root, i, f"{st.node.name or st.node.op_type}:{s}")
                if t is not None:
                    slot_tensor[s] = t
            for s in st.frees:
                t = slot_tensor.pop(s, None)
                if t is not None:
                    tracker.lasts[t] = max(tracker.lasts[t], i)
            return res
        return traced

    try:
        for i, st in enumerate(plan.steps):
            st.fn = wrap(i, st, st.fn)
        plan.run(list(inputs))
    finally:
        for st, fn in zip(plan.steps, originals):
            st.fn = fn
    end = len(plan.steps) - 1
    for s in plan.output_slots:   # graph outputs live to the end of the run
        t = slot_tensor.get(s)
        if t is not None:
            tracker.lasts[t] = end
    return [Interval(size, first, last, name) for size, first, last, name in
            zip(tracker.sizes, tracker.firsts, tracker.lasts, tracker.names)]
