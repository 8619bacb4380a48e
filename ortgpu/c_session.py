"""``session._sess``: onnxruntime's C-level session object, as its own tests and a few libraries
reach it.  ortgpu has one session class; this view offers the C-level method signatures on top
of it (feeds before output names, OrtValueVector results, SessionIOBinding runs)."""
from __future__ import annotations

from ortgpu.value_vector import OrtValueVector


class CSession:
    """The C-level view of an InferenceSession (``session._sess``)."""

    def __init__(self, session):
        self._session = session

    def run(self, output_names, input_feed: dict, run_options=None) -> list:
        return self._session.run(output_names, input_feed, run_options)

    def run_with_ort_values(self, input_dict_ort_values: dict, output_names, run_options=None) -> OrtValueVector:
        """C-level order: feeds first, then output names; the outputs as an OrtValueVector."""
        return OrtValueVector(self._session.run_with_ort_values(output_names, input_dict_ort_values, run_options))

    def run_with_iobinding(self, binding, run_options=None) -> None:
        """Run with a SessionIOBinding (the C-level binding) or an IOBinding."""
        from ortgpu.iobinding import IOBinding  # noqa: PLC0415
        if not isinstance(binding, IOBinding):
            wrapper = IOBinding.__new__(IOBinding)
            wrapper._session, wrapper._iobinding, wrapper._numpy_obj_references = self._session, binding, {}
            binding = wrapper
        self._session.run_with_iobinding(binding, run_options)

    def __getattr__(self, name):  # the rest of the API is the same at both levels
        return getattr(self._session, name)
