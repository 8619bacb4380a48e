"""Custom ops written in Python, in the two styles a user meets.

Subclass style (per session)::

    class Scale(ortgpu.CustomOp):
        inputs, outputs, attrs = ["float"], ["float"], {"alpha": 1.0}
        def Compute(self, inputs, outputs, attributes):
            outputs[0] = inputs[0] * attributes["alpha"]

    sess = ortgpu.InferenceSession(model, custom_ops=[Scale("Scale", 1, "my.domain")])

Decorator style (global, like onnxruntime-extensions' ``onnx_op``, or per session when made
with ``register=False`` and passed in ``custom_ops=``)::

    @ortgpu.custom_op("my.domain", "Scale", inputs=["float"], outputs=["float"], attrs={"alpha": 1.0})
    def scale(x, *, alpha, xp):
        return xp.multiply(x, alpha)

A body (function or ``Compute``) that takes a parameter named ``xp`` is written against the
array module (NumPy on the CPU, CuPy on CUDA): it is registered as a shared kernel, so the
partitioner places it on the device like any op.  A body without ``xp`` is a host (NumPy)
kernel: on a device session its node runs on the CPU provider with copies around it.

Either way an op becomes a :class:`CustomOpDef`: a KernelDef of the registry (types under
"*", as ops without an onnx schema declare them) plus what the loader needs to type its
outputs (ortgpu.custom_op_types).  A session's own ops go into its providers'
``session_kernels`` (see :func:`attach`), never into the global registry, so another session
does not see them.
"""
from __future__ import annotations

import inspect
import threading

import numpy as np

from ortgpu.errors import Fail, InvalidArgument, InvalidGraph
from ortgpu.providers.registry import SHARED, KernelDef, kernel, unregister

DEFAULT_DOMAIN = "ai.onnx.contrib"  # onnxruntime-extensions' domain for Python ops
HOST = "cpu"                        # the kernel source of host (NumPy-only) kernels

_GLOBAL: dict[tuple[str, str, int], "CustomOpDef"] = {}
_lock = threading.Lock()


class CustomOpDef:
    """One custom op: its name, version, declared element types, attributes, output shapes
    and the kernel function the executor calls (``fn(ctx, *inputs, **attrs)``)."""

    def __init__(self, domain: str, op_type: str, body, *, version: int = 1, inputs=None, outputs=None,
                 attrs=None, shape=None, capturable: bool = False, generic: bool | None = None,
                 compute_style: bool = False):
        domain = "" if domain in (None, "ai.onnx") else str(domain)
        if domain == "":
            raise InvalidArgument(f"custom op '{op_type}': a custom op needs a domain of its own "
                                  f"(for example '{DEFAULT_DOMAIN}'), not the ONNX domain")
        if not isinstance(op_type, str) or not op_type:
            raise InvalidArgument(f"custom op: op_type must be a non-empty str, got {op_type!r}")
        self.domain, self.op_type, self.version = domain, op_type, int(version)
        self.body = body
        self.input_types = _element_types(inputs, f"{op_type} inputs")
        self.output_types = _element_types(outputs, f"{op_type} outputs")
        self.attrs = _attr_defaults(attrs, op_type)
        self.shape = shape
        params = _params(body)
        self.takes_xp = "xp" in params
        self.takes_attributes = "attributes" in params
        self.generic = self.takes_xp if generic is None else bool(generic)
        self.compute_style = compute_style
        self.source = SHARED if self.generic else HOST
        self.kernel = KernelDef(op_type, domain, self.version, self.source, _kernel_fn(self),
                                _declared(self.input_types, self.output_types),
                                f"custom op {domain}::{op_type} (Python)", (), bool(capturable))

    @property
    def key(self) -> tuple:
        """The registry key of its kernel: (domain, op type, version, kernel source)."""
        return (self.domain, self.op_type, self.version, self.source)

    def unregister(self) -> None:
        """Take a globally registered op back (sessions made before keep their plans)."""
        with _lock:
            if _GLOBAL.get((self.domain, self.op_type, self.version)) is self:
                del _GLOBAL[(self.domain, self.op_type, self.version)]
                unregister(self.op_type, self.domain, self.version, self.source)

    def __call__(self, *args, **kwargs):
        """The decorated function stays callable as itself."""
        return self.body(*args, **kwargs)

    def __repr__(self):
        where = "device-generic" if self.generic else "host"
        return f"CustomOpDef({self.domain}::{self.op_type}, version {self.version}, {where})"


class CustomOp:
    """Base of subclass-style custom ops: ``MyOp(op_type, op_version, domain)`` with a
    ``Compute(self, inputs, outputs)`` that fills ``outputs[i]`` (or returns the outputs).

    Class attributes declare what the loader and the placement need: ``inputs`` and
    ``outputs`` (element types per position: "float", np.float32, TensorProto.FLOAT; None
    where any type goes; an output declared None has the type of input 0), ``attrs`` (name ->
    default; a list of names for required ones).  ``Compute`` may take ``attributes`` (the
    node's attributes with defaults) and ``xp`` (the array module: then it runs on the device
    too).  ``infer_shapes(self, input_shapes, attributes)`` may return the output shapes."""

    inputs = None
    outputs = None
    attrs: dict | list = {}
    capturable = False

    def __init__(self, op_type: str, op_version: int = 1, domain: str = DEFAULT_DOMAIN):
        self.op_type = op_type
        self.op_version = op_version
        self.domain = domain

    def Compute(self, inputs, outputs):  # noqa: N802 - the tutorial's name
        raise NotImplementedError(f"{type(self).__name__}.Compute is not implemented")

    def infer_shapes(self, input_shapes, attributes):
        return None

    def definition(self) -> CustomOpDef:
        """This op as a CustomOpDef (what a session registers)."""
        shape = None
        if type(self).infer_shapes is not CustomOp.infer_shapes:
            def shape(*shapes, **attrs):
                return self.infer_shapes(list(shapes), attrs)
        return CustomOpDef(self.domain, self.op_type, self.Compute, version=self.op_version,
                           inputs=self.inputs, outputs=self.outputs, attrs=self.attrs, shape=shape,
                           capturable=self.capturable, compute_style=True)


def custom_op(domain: str = DEFAULT_DOMAIN, op_type: str | None = None, *, inputs=None, outputs=None,
              attrs=None, shape=None, version: int = 1, register: bool = True, capturable: bool = False):
    """Decorator: the function becomes the kernel of custom op ``domain::op_type`` (default:
    the function's name).  Its parameters are the op's inputs, then its attributes as keywords
    (declared in ``attrs``: name -> default, or a list of required names), and ``xp`` to be
    written against the array module (placed on the device when one is there).  ``inputs``/
    ``outputs``: element types per position (an output None: the type of input 0).
    ``shape``: "same" (the shape of input 0) or ``fn(*input_shapes, **attrs)`` returning the
    output shape(s) (dims int, str or None).  With ``register=False`` the op is not global:
    pass it to ``InferenceSession(..., custom_ops=[op])``."""
    def wrap(fn):
        d = CustomOpDef(domain, op_type or fn.__name__, fn, version=version, inputs=inputs,
                        outputs=outputs, attrs=attrs, shape=shape, capturable=capturable)
        if register:
            register_global(d)
        return d
    return wrap


def register_global(d: CustomOpDef) -> None:
    """Put `d` into the global kernel registry (every session sees it); a second op of the
    same domain, type and version replaces the first."""
    with _lock:
        old = _GLOBAL.get((d.domain, d.op_type, d.version))
        if old is not None:
            unregister(old.op_type, old.domain, old.version, old.source)
        kernel(d.op_type, d.version, domain=d.domain, provider=d.source,
               types=d.kernel.types, capturable=d.kernel.capturable)(d.kernel.fn)
        _GLOBAL[(d.domain, d.op_type, d.version)] = d


def session_ops(custom_ops) -> dict[tuple[str, str, int], CustomOpDef]:
    """The ``custom_ops=`` argument of a session as {(domain, op type, version): def}."""
    if custom_ops is None:
        return {}
    if isinstance(custom_ops, (CustomOp, CustomOpDef)):
        custom_ops = [custom_ops]
    out = {}
    for i, op in enumerate(custom_ops):
        if isinstance(op, type) and issubclass(op, CustomOp):
            raise InvalidArgument(f"custom_ops[{i}]: pass an instance, {op.__name__}(op_type, op_version, "
                                  f"domain), not the class")
        d = op.definition() if isinstance(op, CustomOp) else op
        if not isinstance(d, CustomOpDef):
            raise InvalidArgument(f"custom_ops[{i}]: expected an ortgpu.CustomOp instance or a function "
                                  f"decorated with @ortgpu.custom_op, got {type(op).__name__}")
        key = (d.domain, d.op_type, d.version)
        if key in out:
            raise InvalidArgument(f"custom_ops: {d.domain}::{d.op_type} version {d.version} is given twice")
        out[key] = d
    return out


def definition_for(domain: str, op_type: str, opset: int, own: dict) -> CustomOpDef | None:
    """The op a node of (domain, op type) at `opset` runs: the session's own first, then the
    global ones; the newest version not past the opset."""
    for table in (own, _GLOBAL):
        cands = [d for (dom, op, v), d in table.items() if dom == domain and op == op_type and v <= opset]
        if cands:
            return max(cands, key=lambda d: d.version)
    return None


def attach(providers, own: dict) -> None:
    """Give each provider of a session that session's own custom ops (its kernel lookups
    consult them before the global registry).  Providers are per session; a provider
    instance handed to two sessions carries the ops of the last one."""
    table = {d.key: d.kernel for d in own.values()}
    for p in providers:
        p.session_kernels = table


def register_custom_ops_library_refused(path) -> None:
    """SessionOptions.register_custom_ops_library: native libraries cannot load here."""
    from ortgpu.errors import NotImplemented as OrtNotImplemented  # noqa: PLC0415
    raise OrtNotImplemented(
        f"register_custom_ops_library({str(path)!r}): ortgpu cannot load native onnxruntime custom-op "
        f"libraries (they are compiled against onnxruntime's C API). Write the op in Python instead: "
        f"subclass ortgpu.CustomOp and pass InferenceSession(..., custom_ops=[MyOp(op_type, op_version, "
        f"domain)]), or decorate a function with @ortgpu.custom_op(domain, op_type, inputs=..., outputs=...)")


# --- the kernel -------------------------------------------------------------------------------

def _kernel_fn(d: CustomOpDef):
    """fn(ctx, *inputs, **attrs) calling the user's body with the defaults filled in and the
    outputs checked against the declaration."""
    def run(ctx, *inputs, **attrs):
        values = dict(d.attrs)
        values.update(attrs)
        xp = ctx.xp
        if d.compute_style:
            outs = [None] * ctx.num_outputs
            kw = {}
            if d.takes_attributes:
                kw["attributes"] = values
            if d.takes_xp:
                kw["xp"] = xp
            res = d.body(list(inputs), outs, **kw)
            results = outs if res is None else res
        else:
            if d.takes_xp:
                values["xp"] = xp
            results = d.body(*inputs, **values)
        return _checked_outputs(d, ctx, results, xp)

    def prepare(ctx, **attrs):
        missing = [a for a, v in d.attrs.items() if v is _REQUIRED and a not in attrs]
        if missing:
            raise InvalidGraph(f"custom op {d.domain}::{d.op_type} node '{ctx.node_name}': required "
                               f"attribute(s) {missing} missing")
        extra = sorted(set(attrs) - set(d.attrs))
        if extra:
            raise InvalidGraph(f"custom op {d.domain}::{d.op_type} node '{ctx.node_name}': attribute(s) "
                               f"{extra} not declared (declared: {sorted(d.attrs)})")

    run.prepare = prepare
    run.__qualname__ = run.__name__ = f"custom_{d.op_type}"
    run.__doc__ = f"custom op {d.domain}::{d.op_type}"
    return run


def _checked_outputs(d: CustomOpDef, ctx, results, xp):
    n = ctx.num_outputs
    if not isinstance(results, (list, tuple)):
        results = (results,)
    results = list(results)
    if len(results) != n:
        raise Fail(f"custom op {d.op_type} node '{ctx.node_name}' produced {len(results)} outputs, "
                   f"the node has {n}")
    out = []
    for i, r in enumerate(results):
        if r is None:
            if ctx.output_present[i]:
                raise Fail(f"custom op {d.op_type} node '{ctx.node_name}': output {i} was not set")
            out.append(None)
            continue
        if not hasattr(r, "dtype") or not hasattr(r, "shape") or isinstance(r, np.generic):
            r = xp.asarray(r)
        want = ctx.output_dtype(i)
        if want is not None and r.dtype != want:
            raise Fail(f"custom op {d.op_type} node '{ctx.node_name}': output {i} is {r.dtype}, "
                       f"declared {want}")
        out.append(r)
    return tuple(out) if n > 1 else out[0]


# --- declarations -----------------------------------------------------------------------------

class _Required:
    def __repr__(self):
        return "<required>"


_REQUIRED = _Required()


def _params(fn) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _element_types(spec, what: str) -> list | None:
    """Element types per position as ONNX codes (None where any type goes)."""
    if spec is None:
        return None
    if isinstance(spec, (str, int, type, np.dtype)):
        spec = [spec]
    return [None if t is None else element_code(t, what) for t in spec]


def element_code(t, what: str = "type") -> int:
    """ONNX element type code of "float"/"tensor(float)"/np.float32/TensorProto.FLOAT."""
    from onnx import TensorProto  # noqa: PLC0415

    from ortgpu.dtypes import _ORT_NAMES, onnx_code  # noqa: PLC0415
    if isinstance(t, (bool, np.bool_)):
        raise InvalidArgument(f"{what}: {t!r} is not an element type")
    if isinstance(t, (int, np.integer)):
        if int(t) not in _ORT_NAMES:
            raise InvalidArgument(f"{what}: {t} is not an ONNX element type code")
        return int(t)
    if isinstance(t, str):
        name = t[7:-1] if t.startswith("tensor(") and t.endswith(")") else t
        by_name = {v: k for k, v in _ORT_NAMES.items()}
        by_name.update({"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "str": TensorProto.STRING})
        if name in by_name:
            return by_name[name]
    try:
        return onnx_code(t)
    except TypeError:
        raise InvalidArgument(f"{what}: {t!r} is not an element type (use 'float', np.float32 or "
                              f"TensorProto.FLOAT)") from None


def _declared(ins, outs) -> dict:
    """The KernelDef declaration: every declared element type under "*" (no schema); any element
    type where the op declares none (or leaves an input's open)."""
    from ortgpu.dtypes import np_dtype  # noqa: PLC0415
    from ortgpu.providers.dtype_sets import ALL  # noqa: PLC0415
    codes = [c for c in (ins or []) + (outs or []) if c is not None]
    if not codes or (ins is not None and None in ins):
        return {"*": ALL}
    return {"*": frozenset(np_dtype(c).name for c in codes)}


def _attr_defaults(attrs, op_type: str) -> dict:
    if attrs is None:
        return {}
    if isinstance(attrs, (list, tuple, set)):
        return {str(a): _REQUIRED for a in attrs}
    if isinstance(attrs, dict):
        # a default value, or None / a type (onnxruntime-extensions' style) for a required one
        return {str(k): (_REQUIRED if v is None or isinstance(v, type) else v) for k, v in attrs.items()}
    raise InvalidArgument(f"custom op {op_type}: attrs must be a dict of name -> default or a list of "
                          f"names, got {type(attrs).__name__}")
