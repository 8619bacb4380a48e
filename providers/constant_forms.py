"""Prepared forms of a session's constant inputs: what a kernel derives from its initializers
once (a 4-bit weight unpacked and dequantized, an int8 weight less its zero point as float for
BLAS, a requantization multiplier) instead of on every run.

A kernel asks through its context (``KernelContext.prepared``); each node keeps its own forms
on its context, which belongs to one plan of one session.  A form is served only while the
very array objects it was made from are the node's inputs again (an identity check, not a
hash of the data): a feed that replaces an overridable initializer, an IOBinding value or a
plan of another session never sees it.  Initializers are never written in place (a run's
outputs that share memory with them are copied: run_core.RunCore._unshared), so identity
is enough.

The forms of one session share a byte budget (``ORTGPU_CONSTANT_FORMS_MB``, default 1024
MiB): a float32 copy of a 4-bit weight is 8x its size, so a large language model must not
double its memory for speed; a form past the budget is made on every run instead, as before.
"""
from __future__ import annotations

import os
import threading

DEFAULT_BUDGET_MB = 1024


def _nbytes(form) -> int:
    """Bytes held by a form: arrays (NumPy or device) inside tuples, lists and dicts."""
    if isinstance(form, (tuple, list)):
        return sum(_nbytes(f) for f in form)
    if isinstance(form, dict):
        return sum(_nbytes(f) for f in form.values())
    return int(getattr(form, "nbytes", 0) or 0)


class ConstantForms:
    """The byte budget that the prepared forms of one session's plans share."""

    __slots__ = ("budget", "used", "_lock")

    def __init__(self, budget_bytes: int | None = None):
        if budget_bytes is None:
            budget_bytes = int(float(os.environ.get("ORTGPU_CONSTANT_FORMS_MB", DEFAULT_BUDGET_MB)) * 2 ** 20)
        self.budget = budget_bytes
        self.used = 0
        self._lock = threading.Lock()

    def keep(self, forms: dict, tag, sources: tuple, form, key=None) -> None:
        """Store `form` (made from the arrays `sources` for `key`) in a node's `forms` under
        `tag`, unless that would pass the budget.  Replacing a tag's form gives its bytes back."""
        size = _nbytes(form)
        with self._lock:
            old = forms.get(tag)
            freed = _nbytes(old[1]) if old is not None else 0
            if self.used - freed + size > self.budget:
                return
            self.used += size - freed
            forms[tag] = (sources, form, key)
