"""Optional values: an empty optional is ``None``, a full one is its element (tensor or list)."""
from ortgpu.providers.dtype_sets import ALL, BOOL
from ortgpu.providers.registry import kernel


@kernel("Optional", since=(15, 28), types={"V": ALL, "O": ALL})
def Optional(ctx, input=None, *, type=None):
    """Wrap `input` as an optional; without input, the empty optional of `type`."""
    if input is None and type is None:
        raise ValueError("Optional needs either an input or the 'type' attribute")
    return input


@kernel("OptionalHasElement", since=(15, 18, 28), types={"O": ALL, "B": BOOL})
def OptionalHasElement(ctx, input=None):
    """True unless the input is missing or an empty optional (a plain tensor/sequence counts as full)."""
    return ctx.xp.asarray(input is not None)


@kernel("OptionalGetElement", since=(15, 18, 28), types={"O": ALL, "V": ALL})
def OptionalGetElement(ctx, input):
    """The element of an optional; from opset 18 a plain tensor or sequence passes through."""
    if input is None:
        raise ValueError("OptionalGetElement on an empty optional")
    return input
