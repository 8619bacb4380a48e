"""The op-kernel registry: (domain, op type, schema since-version, provider) -> kernel.

A kernel is a plain function whose parameters are the op's inputs and attributes, with
ONNX names: ``def Gemm(ctx, A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0)``.
``ctx`` is a :class:`KernelContext` (``ctx.xp`` is ``numpy`` or ``cupy``).  A missing
optional input arrives as ``None``.  Attributes the node leaves out arrive with the
default of the node's own schema version, so the Python defaults are only a fallback.
A kernel returns one value, or a ``tuple`` when the op has several outputs (a ``list``
is a sequence value; ``None`` is an empty optional).

A kernel function may carry a ``prepare(ctx, **attrs)`` attribute: the executor calls it
once per node while it builds the plan (session creation), for work that depends only on
the node (compiling a generated kernel, checking an attribute).

Versions are explicit: ``since=(7, 9, 11, 13)`` lists the schema since-versions that
one function implements.  A node resolves its opset to the since-version of its schema
(``onnx.defs.get_schema(op, max_inclusive_version=v, domain=d)``); a since-version no
function lists is not implemented, so a new opset never silently runs old semantics.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable

import onnx.defs

SHARED = "shared"  # written against the array module: runs on NumPy and on CuPy


@dataclasses.dataclass(frozen=True)
class KernelDef:
    op_type: str
    domain: str
    since: int
    provider: str
    fn: Callable
    types: frozenset | None  # NumPy dtype names accepted for the inputs; None = all the schema allows
    doc: str


_REGISTRY: dict[tuple[str, str, int, str], KernelDef] = {}


def kernel(op_type: str, since: int | Iterable[int], *, domain: str = "",
           provider: str = SHARED, types: Iterable[str] | None = None):
    """Register ``fn`` as the kernel of ``op_type`` for each schema since-version in ``since``."""
    versions = (since,) if isinstance(since, int) else tuple(since)
    domain = "" if domain == "ai.onnx" else domain

    def register(fn):
        for v in versions:
            key = (domain, op_type, v, provider)
            if key in _REGISTRY:
                raise ValueError(f"kernel {domain or 'ai.onnx'}::{op_type}({v}) for {provider} "
                                 f"registered twice ({_REGISTRY[key].fn.__qualname__}, {fn.__qualname__})")
            _REGISTRY[key] = KernelDef(op_type, domain, v, provider, fn,
                                       frozenset(types) if types is not None else None,
                                       (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return register


@functools.lru_cache(maxsize=None)
def schema_for(op_type: str, opset: int, domain: str):
    """The schema a node of this opset uses, or None when onnx defines none."""
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except (onnx.defs.SchemaError, TypeError, ValueError):  # unknown op, or a name onnx cannot take
        return None


def lookup(op_type: str, domain: str, opset: int, providers: Iterable[str]) -> KernelDef | None:
    """The kernel for a node, trying ``providers`` in order (each provider's own, then shared)."""
    domain = "" if domain == "ai.onnx" else domain
    schema = schema_for(op_type, opset, domain)
    since = schema.since_version if schema is not None else None
    for prov in providers:
        if since is not None:
            k = _REGISTRY.get((domain, op_type, since, prov))
            if k is not None:
                return k
        else:  # an op without schema (custom domain): the newest registration not past opset
            cands = [k for (d, o, v, p), k in _REGISTRY.items()
                     if d == domain and o == op_type and p == prov and v <= opset]
            if cands:
                return max(cands, key=lambda k: k.since)
    return None


def registered() -> list[KernelDef]:
    """Every registration, for coverage tables."""
    return sorted(_REGISTRY.values(), key=lambda k: (k.domain, k.op_type, k.since, k.provider))


class KernelContext:
    """What a kernel may use besides its inputs: the array module and facts about the node."""

    __slots__ = ("xp", "provider", "node_name", "op_type", "opset", "num_outputs",
                 "output_present", "run_options", "input_types", "output_types")

    def __init__(self, xp, provider, node_name="", op_type="", opset=0, num_outputs=1,
                 output_present=(True,), input_types=(), output_types=()):
        self.xp = xp
        self.provider = provider
        self.node_name = node_name
        self.op_type = op_type
        self.opset = opset
        self.num_outputs = num_outputs          # outputs the node declares (trailing ones may be absent)
        self.output_present = output_present    # per output: does the graph use it (name not empty)
        self.run_options = None
        self.input_types = input_types          # onnx TypeProto per input when known (else None)
        self.output_types = output_types        # onnx TypeProto per output when known (else None)

    def output_dtype(self, i=0):
        """NumPy dtype declared for output i by shape inference, or None."""
        from ortgpu.dtypes import np_dtype
        tp = self.output_types[i] if i < len(self.output_types) else None
        if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.elem_type:
            return None
        return np_dtype(tp.tensor_type.elem_type)
