"""Mirror of ``onnxruntime.capi`` so that existing imports keep working."""
