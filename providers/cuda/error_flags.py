"""Device error flags checked once per run, not once per launch.

Raw kernels that validate their inputs as they go (Gather, GatherND, ScatterND: an index out
of range) write (found, value, bound) into a small int64 flag on the device.  Reading a
flag back waits for the kernel, so reading it in the launcher cost a full stream sync per
launch and could not be recorded into a CUDA graph.  Instead a launcher hands its flag to
the running provider's ``ErrorFlags`` (``defer``); the provider reads every flag of the run
in one copy when the run ends (``check_pending``) and raises the first error, naming the
node, as the shared kernels' IndexError.  Inside a CUDA-graph capture the flags deferred
are kept with the graph (``take``) and handed back after each replay (``defer_all``): the
capture recorded their zeroing and the kernels' writes, so each replay refills them.

Pending flags are per thread: a session may run on several threads at once.
"""
from __future__ import annotations

import threading


class ErrorFlags:
    """The flags deferred by the launches of the runs on this thread."""

    def __init__(self):
        self._local = threading.local()

    def _pending(self) -> list:
        p = getattr(self._local, "pending", None)
        if p is None:
            p = self._local.pending = []
        return p

    def defer(self, flag, node: str, message: str = "") -> None:
        """Check `flag` (device int64[3]: found, value, bound) when the run ends; `message`
        (with {index} and {dim}) replaces the default IndexError text."""
        self._pending().append((flag, (node, message)))

    def defer_all(self, flags: list) -> None:
        self._pending().extend(flags)

    def take(self) -> list:
        """The pending flags, forgotten here (a capture keeps them with its graph)."""
        p = self._pending()
        out = list(p)
        p.clear()
        return out

    def discard(self) -> None:
        """Forget the pending flags (the run failed already)."""
        self._pending().clear()

    def check_pending(self, xp) -> None:
        """Read every pending flag back in one copy (one wait) and raise the first error."""
        flags = self.take()
        if flags:
            raise_first(xp.stack([f for f, _ in flags]).get(), [n for _, n in flags])


INDEX_MESSAGE = "index {index} is out of bounds for a dimension of size {dim}"


def raise_first(values, nodes) -> None:
    """IndexError (the shared kernels' text, with the node) for the first raised flag row."""
    for (found, index, dim), (node, message) in zip(values.tolist(), nodes):
        if found:
            text = (message or INDEX_MESSAGE).format(index=index, dim=dim)
            raise IndexError(f"{text} (node '{node}')")


def flags_of(ctx):
    """The ErrorFlags of the provider running `ctx`, or None (a launcher then checks at once)."""
    ep = getattr(ctx, "ep", None)
    return getattr(ep, "error_flags", None)
