"""The all-MiniLM-L6-v2-shaped encoder exported by torch, rebuilt from its committed skeleton.

``benchmarks/models/NAME.skeleton.onnx`` is torch's export with the data of its large float
initializers stripped; ``NAME.refill.json`` lists those tensors (name, dtype, shape, rule) and
the seed.  ``load_minilm`` draws them again from NumPy's generator, so the benchmark and the tests
get a 90 MB model from a few hundred kilobytes without torch.  scripts/make_minilm_model.py
writes both files.
"""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
from onnx import numpy_helper

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def load_minilm(name: str = "minilm_l6") -> onnx.ModelProto:
    """The skeleton ``name`` with every stripped initializer refilled by its seeded rule."""
    model = onnx.load(os.path.join(MODELS, f"{name}.skeleton.onnx"))
    with open(os.path.join(MODELS, f"{name}.refill.json"), encoding="utf-8") as f:
        table = json.load(f)
    stubs = {t.name: t for t in model.graph.initializer}
    for k, entry in enumerate(table["tensors"]):
        stub = stubs.get(entry["name"])
        _check_stub(name, entry, stub)
        values = draw(entry, np.random.default_rng([table["seed"], k]))
        stub.CopyFrom(numpy_helper.from_array(values, entry["name"]))
    return model


def draw(entry: dict, rng: np.random.Generator) -> np.ndarray:
    """One tensor's values by its rule: ``normal`` (mean, std), ``ones`` or ``zeros``."""
    shape, dtype, rule = tuple(entry["shape"]), np.dtype(entry["dtype"]), entry["init"]
    if rule == "normal":
        values = rng.standard_normal(shape, dtype=np.float32) * np.float32(entry["std"]) + np.float32(entry["mean"])
        return values.astype(dtype, copy=False)
    if rule == "ones":
        return np.ones(shape, dtype)
    if rule == "zeros":
        return np.zeros(shape, dtype)
    raise ValueError(f"refill rule of {entry['name']!r}: expected normal, ones or zeros, got {rule!r}")


def _check_stub(model: str, entry: dict, stub) -> None:
    """The refill table and the skeleton describe the same tensor (a stale table is an error)."""
    if stub is None:
        raise ValueError(f"{model}: refill table names {entry['name']!r}, which is no initializer of the skeleton")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(stub.data_type)
    if list(stub.dims) != entry["shape"] or str(dtype) != entry["dtype"]:
        raise ValueError(f"{model}: initializer {entry['name']!r} is {dtype}{list(stub.dims)} in the skeleton, "
                         f"{entry['dtype']}{entry['shape']} in the refill table")
    if stub.raw_data or stub.float_data or stub.external_data:
        raise ValueError(f"{model}: initializer {entry['name']!r} still holds data in the skeleton")


def vocabulary_size(model: onnx.ModelProto) -> int:
    """Rows of the word-embedding table (the range of valid ``input_ids``)."""
    for t in model.graph.initializer:
        if t.name.endswith("word_embeddings.weight"):
            return int(t.dims[0])
    raise ValueError("no initializer named *word_embeddings.weight: not a BERT export")


def minilm_feed(model: onnx.ModelProto, batch: int = 3, sequence: int = 10, seed: int = 0) -> dict:
    """Seeded token ids within the vocabulary, a full attention mask, one segment."""
    ids = np.random.default_rng(seed).integers(0, vocabulary_size(model), size=(batch, sequence)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
