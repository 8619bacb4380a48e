"""A CPU provider whose kernels tell the test when they run: tests see inside a run (which
threads run it, who meets whom at a barrier, when the terminate flag is set) without timing."""
import dataclasses

from ortgpu.providers.cpu import CPUExecutionProvider


class ObservedCPU(CPUExecutionProvider):
    """The CPU provider; its kernels of the op types in `observed` (every op when None) call
    `self.observe(op_type)` just before they compute."""

    observed: tuple | None = None

    def observe(self, op_type: str) -> None:
        raise NotImplementedError

    def kernel_for(self, op_type, domain, opset):
        k = super().kernel_for(op_type, domain, opset)
        if k is None or (self.observed is not None and op_type not in self.observed):
            return k
        provider, fn = self, k.fn

        def observed(ctx, *args, **attrs):
            provider.observe(op_type)
            return fn(ctx, *args, **attrs)
        return dataclasses.replace(k, fn=observed)
