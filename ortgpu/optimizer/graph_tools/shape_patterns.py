"""Read the target of a Reshape element by element, as exporters build it: a constant, or a
Concat of constants and single dims taken from Shape(t).

Each element is ``("const", value)`` or ``("dim", t, i)`` (dim i of value t, i >= 0 or
negative from the end), or None when the element is computed some other way.  Recognized
per-dim forms: ``Unsqueeze(Gather(Shape(t), i), [0])`` (i a scalar constant),
``Gather(Shape(t), [i])``, ``Slice(Shape(t), [i], [i + 1])``, with Shape's ``start``
attribute (opset 15) added to i.
"""
from __future__ import annotations

from ortgpu.optimizer.graph_tools.matching import GraphView

INT64_MAX = 2 ** 63 - 1


def shape_elements(view: GraphView, name: str) -> list | None:
    """The elements of the 1-D int tensor `name`, or None when its length is unknown."""
    c = view.ints(name)
    if c is not None:
        return [("const", v) for v in c]
    concat = view.op(name, "Concat")
    if concat is None or concat.attrs.get("axis", 0) not in (0, -1):
        return None
    out = []
    for part in concat.inputs:
        c = view.ints(part)
        if c is not None:
            out += [("const", v) for v in c]
            continue
        dims = _shape_slice(view, part)
        if dims is not None:
            out += dims
            continue
        dim = _single_dim(view, part)
        if dim is None and not _one_element(view, part):
            return None
        out.append(dim)
    return out


def _one_element(view: GraphView, name: str) -> bool:
    shape = view.shape(name)
    return shape == [1]


def _shape_dim(view: GraphView, name: str, index: int):
    """("dim", t, index) when `name` is Shape(t) (its start attribute applied)."""
    shape = view.op(name, "Shape")
    if shape is None:
        return None
    start = shape.attrs.get("start", 0)
    if start and index < 0:
        return None
    return "dim", shape.inputs[0], index + start if start >= 0 else None


def _shape_slice(view: GraphView, name: str) -> list | None:
    """Slice(Shape(t), [a], [b]) with constant bounds (axes 0, step 1) and t of known rank:
    its elements ("dim", t, i) for i in range(a, b) clamped as Slice clamps (torch's exports
    take [:-2] and [-2:-1] of a shape this way); None for anything else."""
    sl = view.op(name, "Slice")
    if sl is None or sl.opset < 10 or len(sl.inputs) < 3:
        return None
    shape = view.op(sl.inputs[0], "Shape")
    rank = view.rank(shape.inputs[0]) if shape is not None and not shape.attrs.get("start", 0) \
        and shape.attrs.get("end") is None else None
    starts, ends = view.ints(sl.inputs[1]), view.ints(sl.inputs[2])
    axes = view.ints(sl.inputs[3]) if len(sl.inputs) > 3 and sl.inputs[3] else [0]
    steps = view.ints(sl.inputs[4]) if len(sl.inputs) > 4 and sl.inputs[4] else [1]
    if rank is None or not starts or not ends or len(starts) != 1 or len(ends) != 1 or axes not in ([0], [-1]) \
            or steps != [1]:
        return None
    lo, hi = (min(max(v + rank if v < 0 else v, 0), rank) for v in (starts[0], ends[0]))
    return [("dim", shape.inputs[0], i) for i in range(lo, hi)]


def _single_dim(view: GraphView, name: str):
    shape = view.op(name, "Shape")
    if shape is not None:   # Shape(t, start=i, end=i + 1) (opset 15): dim i alone
        start, end = shape.attrs.get("start", 0), shape.attrs.get("end")
        if end is not None and start >= 0 and end == start + 1:
            return "dim", shape.inputs[0], start
        return None
    unsq = view.op(name, "Unsqueeze")
    if unsq is not None:
        axes = unsq.attrs.get("axes") if unsq.opset < 13 else (
            view.ints(unsq.inputs[1]) if len(unsq.inputs) > 1 else None)
        gather = view.op(unsq.inputs[0], "Gather")
        idx = view.const(gather.inputs[1]) if gather is not None else None
        if axes in ([0], [-1]) and idx is not None and idx.ndim == 0 and gather.attrs.get("axis", 0) == 0:
            return _shape_dim(view, gather.inputs[0], int(idx))
        return None
    gather = view.op(name, "Gather")
    if gather is not None:
        idx = view.ints(gather.inputs[1])
        if idx is not None and len(idx) == 1 and view.const(gather.inputs[1]).ndim == 1 \
                and gather.attrs.get("axis", 0) == 0:
            return _shape_dim(view, gather.inputs[0], idx[0])
        return None
    sl = view.op(name, "Slice")
    if sl is not None and sl.opset >= 10 and len(sl.inputs) >= 3:
        starts, ends = view.ints(sl.inputs[1]), view.ints(sl.inputs[2])
        axes = view.ints(sl.inputs[3]) if len(sl.inputs) > 3 and sl.inputs[3] else [0]
        steps = view.ints(sl.inputs[4]) if len(sl.inputs) > 4 and sl.inputs[4] else [1]
        if starts and ends and len(starts) == 1 and axes == [0] and steps == [1] and starts[0] >= 0 \
                and ends[0] == starts[0] + 1:
            return _shape_dim(view, sl.inputs[0], starts[0])
    return None


def element_keeps_dim(view: GraphView, element, position: int, family: set[str], reference: str,
             zero_copies: bool = True) -> bool:
    """Whether a Reshape target element keeps dim `position` of `reference`: a 0 (a copy of the
    Reshape input's dim, with allowzero off: only when `zero_copies` says that input has the
    reference's leading dims), dim `position` of a value of `family` (values known to share
    those leading dims), or a constant equal to the dim shape inference knows."""
    if element is None:
        return False
    if element[0] == "const":
        if element[1] == 0:
            return zero_copies
        known = (view.shape(reference) or [])
        return position < len(known) and known[position] == element[1]
    _, t, i = element
    if i is None:
        return False
    rank = view.rank(t)
    if t not in family:   # another value's dim, the same declared dim_param as the reference's
        return _same_named_dim(view, t, i, reference, position)
    return i == position or (rank is not None and i == position - rank)


def _same_named_dim(view: GraphView, t: str, i: int, reference: str, position: int) -> bool:
    """Whether dim i of t and dim `position` of `reference` carry the same dim_param name (the
    model's own names, which inference propagates: torch's exports build Reshape targets from
    the token ids' shape, whose 'batch' and 'sequence' are those of the hidden states)."""
    ts, rs = view.shape(t), view.shape(reference)
    if not ts or not rs or position >= len(rs) or not -len(ts) <= i < len(ts):
        return False
    a, b = ts[i], rs[position]
    return isinstance(a, str) and a == b


def keeps_leading_dims(view: GraphView, elems: list, family: set[str], reference: str,
                       zero_copies: bool = True, lead: int = 2) -> bool:
    """Whether a Reshape target keeps the first `lead` dims of `reference` (see element_keeps_dim);
    one of them may be -1 when every later element is a positive constant: the target's
    trailing dims then hold what the input's did, so the -1 can only be that leading dim."""
    minus = [i for i, e in enumerate(elems[:lead]) if e == ("const", -1)]
    if len(minus) > 1 or (minus and not all(e is not None and e[0] == "const" and e[1] > 0
                                            for e in elems[lead:])):
        return False
    return all(i in minus or element_keeps_dim(view, e, i, family, reference, zero_copies)
               for i, e in enumerate(elems[:lead]))
