"""Generated inputs for a session: random values of each input's type, symbolic dims set to 1."""
from __future__ import annotations

import numpy as np

from ortgpu.dtypes import elem_name


_BY_NAME = {elem_name(c): c for c in range(1, 30)}


def _dtype_of(type_str: str):
    from ortgpu.dtypes import np_dtype
    inner = type_str[len("tensor("):-1]
    return np_dtype(_BY_NAME[inner])


def make_inputs(session, seed: int = 0, dim_default: int = 1) -> dict:
    """{input name: array} for every required input of `session` (tensors only)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in session.get_inputs():
        if not arg.type.startswith("tensor("):
            raise ValueError(f"cannot generate a value for input '{arg.name}' of type {arg.type}; "
                             f"pass --inputs")
        shape = [d if isinstance(d, int) and d >= 0 else dim_default for d in (arg.shape or [])]
        dtype = _dtype_of(arg.type)
        if dtype == np.bool_:
            value = rng.random(shape) < 0.5
        elif dtype.kind in "iu":
            value = rng.integers(0, 4, size=shape).astype(dtype)
        elif dtype == object:
            value = np.array(["a"] * int(np.prod(shape)), dtype=object).reshape(shape)
        else:
            value = rng.standard_normal(shape).astype(np.float32).astype(dtype)
        feed[arg.name] = value
    return feed
