"""Identity."""
from ortgpu.providers.registry import kernel


@kernel("Identity", since=(1, 13, 14, 16, 19, 21, 23, 24, 25))
def Identity(ctx, input):
    return input
