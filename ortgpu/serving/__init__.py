"""Serving ortgpu models over the Open Inference Protocol (KServe v2 / Triton's protocol).

``ortgpu serve REPOSITORY`` runs KServe's Python model server (REST + gRPC, health, readiness,
metadata, Prometheus metrics) over a Triton-layout model repository; requests are dynamically
batched by :mod:`ortgpu.serving.batching`; :mod:`ortgpu.serving.ray_serve` runs the same model
code as Ray Serve replicas and :mod:`ortgpu.serving.ray_data` gives a ``map_batches`` callable.

Modules and what they need:

- ``repository``, ``batching``, ``tensors``, ``runner``: NumPy and ortgpu only.
- ``config``: ``tritonclient`` (its model-config protobuf reads ``config.pbtxt``).
- ``kserve_model``, ``server``: ``kserve``.
- ``ray_serve``, ``ray_data``: ``ray[serve]``.

Install them with ``pip install -e ".[serve]"``. Nothing outside this package imports it.
"""
