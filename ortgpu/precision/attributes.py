"""Attribute rewrites for outputs whose element type an attribute sets.

`narrow_typed_attributes(node, ...)` changes the attributes of a node that runs in the narrow
type so that its float32 output (typed by an attribute, not by an input) becomes narrow:
Cast 'to', Constant 'value'/'value_float'/'value_floats', ConstantOfShape 'value' (default
float32 zero), 'dtype' of RandomNormal/RandomUniform/SequenceEmpty (default float32) and of
the *Like ops (whose output follows the input when 'dtype' is absent).
"""
from __future__ import annotations

import numpy as np
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from ortgpu.precision.tensors import lower_array, lower_tensor

_DTYPE_DEFAULT_FLOAT = ("RandomNormal", "RandomUniform", "SequenceEmpty")
_DTYPE_ELSE_INPUT = ("RandomNormalLike", "RandomUniformLike", "EyeLike", "Bernoulli")


def _set(node, attr: AttributeProto) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == attr.name:
            node.attribute[i].CopyFrom(attr)
            return
    node.attribute.append(attr)


def _remove(node, name: str) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            return


def narrow_typed_attributes(node, target: int, first_input_narrow: bool, min_positive_val: float,
                            max_finite_val: float) -> bool:
    """Rewrite `node`'s attributes so that its attribute-typed float32 output becomes `target`;
    True when the output is now narrow, False when the node keeps a float32 output."""
    attrs = {a.name: a for a in node.attribute}
    op = node.op_type
    if op == "Cast":
        if "to" in attrs and attrs["to"].i == TensorProto.FLOAT:
            _set(node, helper.make_attribute("to", target))
            return True
        return False
    if op in ("Constant", "ConstantOfShape"):
        value = attrs.get("value")
        if value is not None and value.t.data_type == TensorProto.FLOAT:
            _set(node, helper.make_attribute("value", lower_tensor(value.t, target, min_positive_val,
                                                                   max_finite_val)))
            return True
        if op == "ConstantOfShape" and value is None:  # the default value is a float32 zero
            _set(node, helper.make_attribute("value", numpy_helper.from_array(
                lower_array(np.zeros(1, np.float32), target))))
            return True
        for name, shape in (("value_float", ()), ("value_floats", None)):
            if name in attrs:
                data = np.asarray(helper.get_attribute_value(attrs[name]), np.float32)
                _remove(node, name)
                _set(node, helper.make_attribute("value", numpy_helper.from_array(lower_array(
                    data.reshape(shape) if shape is not None else data, target, min_positive_val,
                    max_finite_val))))
                return True
        return False
    if op in _DTYPE_DEFAULT_FLOAT or op in _DTYPE_ELSE_INPUT:
        dtype = attrs.get("dtype")
        if dtype is None:
            if op in _DTYPE_ELSE_INPUT:
                return first_input_narrow
            _set(node, helper.make_attribute("dtype", target))
            return True
        if dtype.i == TensorProto.FLOAT:
            _set(node, helper.make_attribute("dtype", target))
            return True
    return False
