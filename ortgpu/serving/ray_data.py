"""Offline batch inference on Ray Data: a callable class for ``Dataset.map_batches``.

::

    import ray
    from ortgpu.serving.ray_data import OrtgpuPredictor
    ds = ray.data.read_parquet("s3://bucket/features/")
    out = ds.map_batches(OrtgpuPredictor, fn_constructor_kwargs={"model_path": "model.onnx"},
                         batch_size=64, concurrency=4, num_gpus=1)   # num_gpus only where GPUs exist

Ray creates one instance per actor (so one ortgpu session per actor, loaded once) and calls it
with batches as dicts of NumPy arrays; the model's inputs are read from the columns of the same
names, the outputs are added as new columns (the input columns are kept).
"""
from __future__ import annotations

import numpy as np

from .tensors import BadRequest


class OrtgpuPredictor:
    """One session per Ray actor; ``__call__(batch) -> batch + output columns``."""

    def __init__(self, model_path: str, providers=None, backend: str = "ortgpu", output_names=None,
                 column_map: dict[str, str] | None = None):
        from .runner import backend_module
        module = backend_module(backend)
        if providers is None:
            available = module.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = module.InferenceSession(model_path, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = list(output_names or [o.name for o in self.session.get_outputs()])
        self.column_map = dict(column_map or {})   # model input name -> column name

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for name in self.input_names:
            column = self.column_map.get(name, name)
            if column not in batch:
                raise BadRequest(f"model input {name}: no column {column!r} in the batch (columns: {list(batch)})")
            feeds[name] = _stack(batch[column])
        outputs = self.session.run(self.output_names, feeds)
        result = dict(batch)
        for name, value in zip(self.output_names, outputs):
            result[name] = value
        return result


def _stack(column) -> np.ndarray:
    """A column of per-row arrays (object dtype) as one array with the batch first."""
    array = np.asarray(column)
    if array.dtype == object and array.size and isinstance(array.flat[0], np.ndarray):
        return np.stack(list(array))
    return array
