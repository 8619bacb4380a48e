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

A registration declares what the kernel needs, where the placement and the capture check
read it: ``types`` maps each type constraint of the schema ("T", "Tind", ...; "*" for an op
without a schema: every tensor input and output) to the element types the kernel runs
(NumPy dtype names; the sets of ``providers.dtype_sets``); ``host_inputs`` lists the inputs
it reads on the host (a Reshape's shape): they are delivered as NumPy arrays on any
provider; ``capturable`` says whether it may run inside a CUDA-graph capture (no host
round trip, no data-dependent output shape, no control flow).

Versions are explicit: ``since=(7, 9, 11, 13)`` lists the schema since-versions that
one function implements.  A node resolves its opset to the since-version of its schema
(``onnx.defs.get_schema(op, max_inclusive_version=v, domain=d)``); a since-version no
function lists is not implemented, so a new opset never silently runs old semantics.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping

import onnx.defs

SHARED = "shared"  # written against the array module: runs on NumPy and on CuPy


@dataclasses.dataclass(frozen=True)
class KernelDef:
    op_type: str
    domain: str
    since: int
    provider: str
    fn: Callable
    types: dict | None        # type constraint -> NumPy dtype names it runs; None = undeclared
    doc: str
    host_inputs: tuple = ()   # input indices read on the host (delivered as NumPy arrays)
    capturable: bool = True   # may run inside a CUDA-graph capture

    def takes(self, input_types, output_types=()) -> bool:
        """Whether the element types of a node's inputs and outputs (onnx TypeProtos, None
        where unknown) are all among those this kernel declares for their type constraint."""
        if not self.types:
            return True
        for tp, constraint in _typed_formals(self, input_types, output_types):
            allowed = self.types.get(constraint)
            if allowed is None or tp is None:
                continue
            name = _element_type_name(tp)
            if name is not None and name not in allowed:
                return False
        return True


def _typed_formals(k: KernelDef, input_types, output_types):
    """(TypeProto, type-constraint name) for each input and output of a node of `k`'s op."""
    schema = schema_for(k.op_type, k.since, k.domain)
    if schema is None:  # no schema: "*" covers every tensor
        for tp in list(input_types) + list(output_types):
            yield tp, "*"
        return
    for formals, types in ((schema.inputs, input_types), (schema.outputs, output_types)):
        for i, tp in enumerate(types):
            if not formals:
                break
            yield tp, formals[min(i, len(formals) - 1)].type_str


def _element_type_name(tp) -> str | None:
    """NumPy dtype name of a tensor's (or a sequence's/optional's tensor's) element type."""
    while tp is not None:
        kind = tp.WhichOneof("value")
        if kind in ("tensor_type", "sparse_tensor_type"):
            code = getattr(tp, kind).elem_type
            if not code:
                return None
            from ortgpu.dtypes import np_dtype  # noqa: PLC0415
            try:
                return np_dtype(code).name
            except TypeError:
                return None
        if kind == "sequence_type":
            tp = tp.sequence_type.elem_type
        elif kind == "optional_type":
            tp = tp.optional_type.elem_type
        else:
            return None
    return None


_REGISTRY: dict[tuple[str, str, int, str], KernelDef] = {}


def kernel(op_type: str, since: int | Iterable[int], *, domain: str = "",
           provider: str = SHARED, types: Mapping[str, Iterable[str]] | None = None,
           host_inputs: Iterable[int] = (), capturable: bool = True):
    """Register ``fn`` as the kernel of ``op_type`` for each schema since-version in ``since``,
    with what it declares (see the module docstring)."""
    versions = (since,) if isinstance(since, int) else tuple(since)
    domain = "" if domain == "ai.onnx" else domain
    if types is not None and (isinstance(types, (str, frozenset, set, list, tuple)) or not types):
        raise TypeError(f"kernel {op_type}: types= maps type constraints to element types, "
                        f"e.g. {{'T': FLOAT}}; got {types!r}")
    declared = None if types is None else {c: frozenset(t) for c, t in types.items()}

    def register(fn):
        for v in versions:
            key = (domain, op_type, v, provider)
            if key in _REGISTRY:
                raise ValueError(f"kernel {domain or 'ai.onnx'}::{op_type}({v}) for {provider} "
                                 f"registered twice ({_REGISTRY[key].fn.__qualname__}, {fn.__qualname__})")
            _REGISTRY[key] = KernelDef(op_type, domain, v, provider, fn, declared,
                                       (fn.__doc__ or "").strip().split("\n")[0],
                                       tuple(host_inputs), bool(capturable))
        return fn

    return register


@functools.lru_cache(maxsize=None)
def schema_for(op_type: str, opset: int, domain: str):
    """The schema a node of this opset uses, or None when onnx defines none."""
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except (onnx.defs.SchemaError, TypeError, ValueError):  # unknown op, or a name onnx cannot take
        return None


def lookup(op_type: str, domain: str, opset: int, providers: Iterable[str],
           extra: Mapping | None = None) -> KernelDef | None:
    """The kernel for a node, trying ``providers`` in order (each provider's own, then shared).
    ``extra`` is a table keyed like the registry (one session's custom ops) consulted first."""
    domain = "" if domain == "ai.onnx" else domain
    schema = schema_for(op_type, opset, domain)
    since = schema.since_version if schema is not None else None
    tables = (extra, _REGISTRY) if extra else (_REGISTRY,)
    for prov in providers:
        for table in tables:
            if since is not None:
                k = table.get((domain, op_type, since, prov))
                if k is not None:
                    return k
            else:  # an op without schema (custom domain): the newest registration not past opset
                cands = [k for (d, o, v, p), k in table.items()
                         if d == domain and o == op_type and p == prov and v <= opset]
                if cands:
                    return max(cands, key=lambda k: k.since)
    return None


def unregister(op_type: str, domain: str, since: int, provider: str) -> None:
    """Remove one registration (a global custom op the user takes back); absent is no error."""
    _REGISTRY.pop(("" if domain == "ai.onnx" else domain, op_type, since, provider), None)


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
