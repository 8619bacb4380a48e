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
the node (compiling a generated kernel, checking an attribute).  Work that depends on the
node's constant inputs (initializers) goes through ``ctx.prepared(...)`` at run time instead:
the form is kept for the session while those inputs are the same arrays
(providers/constant_forms.py).

A registration declares what the kernel needs, where the placement and the capture check
read it: ``types`` maps each type constraint of the schema ("T", "Tind", ...; "*" for an op
without a schema: every tensor input and output) to the element types the kernel runs
(NumPy dtype names; the sets of ``providers.dtype_sets``); it is required, so that the
placement (``KernelDef.takes``) always knows what a kernel runs, and ``{}`` is only for an op
whose schema fixes every type.  ``host_inputs`` lists the inputs
it reads on the host (a Reshape's shape): they are delivered as NumPy arrays on any
provider; ``capturable`` says whether it may run inside a CUDA-graph capture (no host
round trip, no data-dependent output shape, no control flow), and if not, why; ``host_only``
gives the reason a shared kernel must stay off CuPy (the CUDA provider reads it).

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
    types: dict               # type constraint -> NumPy dtype names it runs ({}: the schema fixes all)
    doc: str
    host_inputs: tuple = ()   # input indices read on the host (delivered as NumPy arrays)
    capturable: bool = True   # may run inside a CUDA-graph capture
    not_capturable_because: str = ""   # why not (one of the reasons below), when it may not
    host_only: str = ""       # why a shared kernel must not run on CuPy (the CUDA provider declines it)

    def takes(self, input_types, output_types=()) -> bool:
        """Whether the element types of a node's inputs and outputs (onnx TypeProtos, None
        where unknown) are all among those this kernel declares for their type constraint."""
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
    custom = CUSTOM_FORMALS.get((k.domain, k.op_type)) if schema is None else None
    if custom is not None:  # an op without onnx schema whose kernel module named its formals
        for formals, types in zip(custom, (input_types, output_types)):
            for i, tp in enumerate(types):
                if formals:
                    yield tp, formals[min(i, len(formals) - 1)]
        return
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
            return _dtype_name(getattr(tp, kind).elem_type)
        if kind == "sequence_type":
            tp = tp.sequence_type.elem_type
        elif kind == "optional_type":
            tp = tp.optional_type.elem_type
        else:
            return None
    return None


@functools.lru_cache(maxsize=None)
def _dtype_name(code: int) -> str | None:
    """NumPy dtype name of an ONNX element type code; None for 0 or a type NumPy has no dtype for."""
    if not code:
        return None
    from ortgpu.dtypes import np_dtype  # noqa: PLC0415
    try:
        return np_dtype(code).name
    except TypeError:
        return None


_REGISTRY: dict[tuple[str, str, int, str], KernelDef] = {}

# Why a kernel may not run inside a CUDA-graph capture (``capturable=<reason>``).
CONTROL_FLOW = "control flow: it runs subgraphs chosen at run time"
DATA_DEPENDENT = "its output shape depends on the input data"
HOST_ROUND_TRIP = "it reads device values on the host (or uploads host tables) while it runs"

# (domain, op) -> (input constraints, output constraints) for ops onnx has no schema for
# (com.microsoft): the type-constraint name of each formal, as onnxruntime's schema names it.
CUSTOM_FORMALS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def declare_formals(domain: str, op_type: str, inputs: Iterable[str], outputs: Iterable[str]) -> None:
    """Name the type constraint of each input and output of a schema-less op, so that its
    kernels can declare ``types`` per constraint; the last name repeats for variadic formals."""
    CUSTOM_FORMALS[(domain, op_type)] = (tuple(inputs), tuple(outputs))


def kernel(op_type: str, since: int | Iterable[int], *, domain: str = "",
           provider: str = SHARED, types: Mapping[str, Iterable[str]] | None = None,
           host_inputs: Iterable[int] = (), capturable: bool | str = True, host_only: str = ""):
    """Register ``fn`` as the kernel of ``op_type`` for each schema since-version in ``since``,
    with what it declares (see the module docstring).  ``types`` is required: a registration
    without it raises TypeError at import, naming the op.  ``capturable`` is True, False, or
    the reason it is not (CONTROL_FLOW, DATA_DEPENDENT, HOST_ROUND_TRIP or any short text).
    ``host_only`` (a shared kernel) says why it runs badly or not at all on CuPy: the CUDA
    provider then leaves its nodes to the CPU until a provider="cuda" kernel exists."""
    versions = (since,) if isinstance(since, int) else tuple(since)
    domain = "" if domain == "ai.onnx" else domain
    name = f"{domain or 'ai.onnx'}::{op_type}({','.join(map(str, versions))}) for {provider}"
    if types is None:
        raise TypeError(f"kernel {name}: types= is required: map each type constraint of the "
                        f"schema to the element types the kernel runs, e.g. types={{'T': FLOAT}} "
                        f"(providers/dtype_sets.py); {{}} only when the schema fixes every type")
    if isinstance(types, (str, frozenset, set, list, tuple)) or not isinstance(types, Mapping):
        raise TypeError(f"kernel {name}: types= maps type constraints to element types, "
                        f"e.g. {{'T': FLOAT}}; got {types!r}")
    if not types and _tensor_constraints(op_type, versions, domain):
        raise TypeError(f"kernel {name}: types={{}} is only for an op whose schema fixes every "
                        f"type; declare {sorted(_tensor_constraints(op_type, versions, domain))}")
    declared = {c: frozenset(t) for c, t in types.items()}
    because = capturable if isinstance(capturable, str) else ""
    capturable = capturable is True

    def register(fn):
        for v in versions:
            key = (domain, op_type, v, provider)
            if key in _REGISTRY:
                raise ValueError(f"kernel {domain or 'ai.onnx'}::{op_type}({v}) for {provider} "
                                 f"registered twice ({_REGISTRY[key].fn.__qualname__}, {fn.__qualname__})")
            _REGISTRY[key] = KernelDef(op_type, domain, v, provider, fn, declared,
                                       (fn.__doc__ or "").strip().split("\n")[0],
                                       tuple(host_inputs), capturable, because, host_only)
        return fn

    return register


def _tensor_constraints(op_type: str, versions, domain: str) -> set[str]:
    """The type constraints of the op's schemas (at `versions`) that admit a tensor type
    ("*" for an op without schema): those a registration must declare."""
    names = set()
    for v in versions:
        schema = schema_for(op_type, v, domain)
        if schema is None:
            names.add("*")
            continue
        names.update(tc.type_param_str for tc in schema.type_constraints
                     if any("tensor(" in t for t in tc.allowed_type_strs))
    return names


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
    """What a kernel may use besides its inputs: the array module, the provider that runs it
    (its stream and options) and facts about the node."""

    __slots__ = ("xp", "provider", "node_name", "op_type", "opset", "num_outputs",
                 "output_present", "run_options", "input_types", "output_types", "ep",
                 "constant_inputs", "constant_forms", "_forms")

    def __init__(self, xp, provider, node_name="", op_type="", opset=0, num_outputs=1,
                 output_present=(True,), input_types=(), output_types=(), ep=None,
                 constant_inputs=(), constant_forms=None):
        self.xp = xp
        self.provider = provider                # the provider's name
        self.ep = ep                            # the ExecutionProvider running the node (stream, config)
        self.node_name = node_name
        self.op_type = op_type
        self.opset = opset
        self.num_outputs = num_outputs          # outputs the node declares (trailing ones may be absent)
        self.output_present = output_present    # per output: does the graph use it (name not empty)
        self.run_options = None
        self.input_types = input_types          # onnx TypeProto per input when known (else None)
        self.output_types = output_types        # onnx TypeProto per output when known (else None)
        # per input: a constant of this session (an initializer no feed can replace, or an
        # omitted optional input); the executor sets it, a context made elsewhere has none
        self.constant_inputs = constant_inputs
        self.constant_forms = constant_forms    # the session's ConstantForms (byte budget), or None
        self._forms = {}                        # tag -> (source arrays, prepared form, key)

    def is_constant(self, i: int) -> bool:
        """Whether input `i` is a constant of this session: an initializer of the node's graph
        that is not also a graph input (a feed cannot replace it), or an omitted optional input
        (one past the node's last input too).  False for every input of a context the executor
        did not make."""
        c = self.constant_inputs
        if i < len(c):
            return c[i]
        return self.constant_forms is not None

    def would_keep(self, tag, nbytes: int) -> bool:
        """Whether a form under `tag` is kept already, or one of `nbytes` bytes fits the
        session's budget now: a kernel whose general path does less than making a form that
        would not be kept (a huge table) asks before ``prepared``."""
        if tag in self._forms:
            return True
        store = self.constant_forms
        return store is not None and store.used + nbytes <= store.budget

    def prepared(self, tag, inputs: tuple, values: tuple, make, key=None):
        """``make()``, a form derived from the node's inputs at positions `inputs` (their values
        `values`) and from `tag` (any hashable: name the form and whatever else it depends on,
        a dtype, a length).  When every one of those inputs is a constant of this session the
        form is kept for the session's lifetime and served again while the inputs are the very
        same arrays (providers/constant_forms.py); otherwise it is made on every call.

        `key` (compared by ==) is what else the form depends on that changes from run to run,
        such as another input's shape: one form is kept per tag, made again when the key
        differs from the kept one's (a tag per shape would grow without bound)."""
        entry = self._forms.get(tag)
        if entry is not None and entry[2] == key:
            for a, b in zip(entry[0], values):  # a plain loop: no generator on the hot path
                if a is not b:
                    break
            else:
                return entry[1]
        form = make()
        store = self.constant_forms
        if store is not None and all(self.is_constant(i) for i in inputs):
            store.keep(self._forms, tag, tuple(values), form, key)
        return form

    def output_dtype(self, i=0):
        """NumPy dtype declared for output i by shape inference, or None."""
        from ortgpu.dtypes import np_dtype
        tp = self.output_types[i] if i < len(self.output_types) else None
        if tp is None or tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.elem_type:
            return None
        return np_dtype(tp.tensor_type.elem_type)
