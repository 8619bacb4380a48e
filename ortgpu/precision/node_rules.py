"""Which inputs and outputs of one node change type when the node runs in a narrow float type.

The node's schema decides.  Each input and output is bound to a type parameter ('T') or a
fixed type ('tensor(float)'); a parameter converts when a float32 value bound to it may be the
narrow type (its allowed types include it).  Then every float32 input bound to it is wanted in
the narrow type and every output bound to it becomes narrow.  A fixed 'tensor(float)' input
(Resize scales, ...) stays float32.  An output bound to a parameter that no input binds gets its
type from attributes (Cast 'to', Constant 'value', 'dtype'): `attribute_typed` lists those that
may become narrow, and `ortgpu.precision.attributes` rewrites the attributes.
"""
from __future__ import annotations

import dataclasses

import onnx.defs

FLOAT = "tensor(float)"
_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic


def is_float(type_string: str | None) -> bool:
    """The type holds float32 tensors (tensor(float), seq(tensor(float)), optional(...))."""
    return type_string is not None and FLOAT in type_string


def lower_type(type_string: str, narrow: str) -> str:
    """`type_string` with float32 tensors replaced by `narrow` ('float16' or 'bfloat16')."""
    return type_string.replace(FLOAT, f"tensor({narrow})")


@dataclasses.dataclass
class NodePlan:
    lower_inputs: list[bool]        # input i is wanted in the narrow type
    lower_outputs: list[bool]       # output j becomes narrow (attribute-typed ones excluded)
    attribute_typed: list[int]      # outputs typed by attributes that may become narrow
    output_types: list[str | None]  # original output types, filled in from bound inputs


def _param(params, i: int, side: str):
    """The formal parameter at position i (a trailing variadic one covers the rest) and the key
    of its type binding: a heterogeneous variadic binds each position separately."""
    if i < len(params):
        p = params[i]
    elif params and params[-1].option == _VARIADIC:
        p = params[-1]
    else:
        return None, None
    if p.option == _VARIADIC and not p.is_homogeneous:
        return p, (p.type_str, side, i)
    return p, (p.type_str,)


def plan_node(schema, input_types: list[str | None], output_types: list[str | None], narrow: str,
              out_of_range: list[bool] | None = None) -> NodePlan:
    """The NodePlan of one node of `schema` whose inputs and outputs had these original types
    (None for an absent output).  `out_of_range[i]`: input i is a constant the narrow type
    cannot hold; a parameter bound only to such inputs, and to no output, stays float32 (the
    running variance of a BatchNormalization can exceed 65504)."""
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}

    def allows(key, type_string):
        return lower_type(type_string, narrow) in allowed.get(key[0], {key[0]})

    bound: dict[tuple, list[str]] = {}
    in_keys = []
    for i, t in enumerate(input_types):
        _, key = _param(schema.inputs, i, "in")
        in_keys.append(key)
        if key is not None and t is not None:
            bound.setdefault(key, []).append(t)
    converts = {key: any(is_float(t) and allows(key, t) for t in types) for key, types in bound.items()}
    if out_of_range is not None:
        out_keys = {_param(schema.outputs, j, "out")[1] for j, t in enumerate(output_types) if t is not None}
        for key in converts:
            slots = [i for i, k in enumerate(in_keys) if k == key and is_float(input_types[i])]
            if slots and key not in out_keys and all(out_of_range[i] for i in slots):
                converts[key] = False
    lower_inputs = [bool(key is not None and converts.get(key) and is_float(t))
                    for key, t in zip(in_keys, input_types)]

    lower_outputs, attribute_typed, resolved = [], [], []
    for j, t in enumerate(output_types):
        _, key = _param(schema.outputs, j, "out")
        if t is None and key in bound:
            t = bound[key][0]  # the output has the type its parameter is bound to
        resolved.append(t)
        if key is None or not is_float(t):
            lower_outputs.append(False)
        elif key in bound:
            lower_outputs.append(bool(converts[key]))
        else:
            lower_outputs.append(False)
            if allows(key, t):
                attribute_typed.append(j)
    return NodePlan(lower_inputs, lower_outputs, attribute_typed, resolved)
