"""Identity."""
from ortgpu.providers.dtype_sets import ALL, FLOAT6, STANDARD
from ortgpu.providers.registry import kernel


@kernel("Identity", since=(1, 13, 14, 16, 19, 21, 23, 24, 25),
        types={"T": STANDARD, "V": ALL - FLOAT6})
def Identity(ctx, input):
    return input
