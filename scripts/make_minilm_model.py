"""Export an all-MiniLM-L6-v2-shaped encoder with torch and commit its weightless skeleton.

all-MiniLM-L6-v2 (the sentence-transformers embedding model) is a BERT: 6 layers, hidden 384,
12 heads, intermediate 1536, GELU, 512 positions, 2 token types, vocabulary 30522: about 22.7 M
float32 parameters, 90 MB, too big to commit.  This script builds that configuration as a
transformers ``BertModel`` with seeded random weights (nothing is downloaded), exports it with
``torch.onnx.export`` as a user does (the call's defaults: the dynamo exporter and its opset,
20 for torch 2.13; inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` and the output
``last_hidden_state`` with dynamic batch and sequence axes), and writes

* ``benchmarks/models/minilm_l6.skeleton.onnx``: the exported graph, every float initializer of
  ``REFILL_MIN_ELEMENTS`` elements or more stripped of its data (name, dtype and dims kept); small
  and integer initializers (shapes, slice bounds, the attention scale, position ids) stay intact;
* ``benchmarks/models/minilm_l6.refill.json``: per stripped tensor its name, dtype, shape and
  how ``benchmarks/minilm.py`` refills it from a seeded NumPy generator (BERT's initialisation:
  normal(0, 0.02); LayerNormalization scales ones and biases zeros).

``--exporter torchscript`` writes the older TorchScript exporter's graph instead
(``minilm_l6_torchscript.*``; what optimum and the ONNX files on the model hub were made with).

Changes from the real model, and why:
* the pooler is left out (``add_pooling_layer=False``): sentence-transformers mean-pools
  ``last_hidden_state`` outside the ONNX graph, and its export has no pooler either;
* before export every parameter is drawn distinct (normal(0, 0.02), LayerNorm scales 1 plus
  that noise): a freshly initialised BERT has all LayerNorm scales equal to one and all biases
  zero, and torch's exporter would merge those equal tensors into one shared initializer, a
  graph no trained model has;
* the exporter's debugging notes on nodes and values (``metadata_props``: the Python stack, the
  FX node, the module path; 600 kB of the 700 kB) are dropped: no runtime reads them;
* the vocabulary is kept at 30522: the stripped skeleton does not store the embedding table, so
  it does not weigh on the committed file; the loader draws it (11.7 M values) in a fraction of
  a second.

Needs torch, transformers and, for the default exporter, onnxscript:

    pip install torch transformers onnxscript       # or: pip install -e ".[export]"
    python scripts/make_minilm_model.py [--exporter dynamo|torchscript]

Rerun only to change the committed files; the benchmark and the tests need neither torch nor
transformers.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "models"
CONFIG = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2)
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUT = "last_hidden_state"
REFILL_MIN_ELEMENTS = 256  # float initializers this large are stripped (a bias has 384 elements)
SEED = 0
STD = 0.02  # BertConfig.initializer_range


def build_model():
    """The encoder with distinct seeded weights, returning ``last_hidden_state`` only."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    bert = BertModel(BertConfig(**CONFIG), add_pooling_layer=False)
    with torch.no_grad():
        for name, p in bert.named_parameters():
            p.normal_(0.0, STD)
            if "LayerNorm.weight" in name:
                p.add_(1.0)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    return Encoder().eval()


def export(exporter: str, path: pathlib.Path):
    """``torch.onnx.export`` as a user calls it; returns the model and a (feed, torch output) pair."""
    import torch
    model = build_model()
    gen = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, CONFIG["vocab_size"], (3, 10), generator=gen)
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUTS + [OUTPUT]}
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), input_names=INPUTS, output_names=[OUTPUT],
                          dynamic_axes=axes, dynamo=exporter == "dynamo", external_data=False)
        expected = model(*args).numpy()
    return {n: a.numpy() for n, a in zip(INPUTS, args)}, expected


def refill_rule(name: str, consumers: list[tuple[str, int]]) -> dict:
    """How the loader refills one stripped tensor: LayerNormalization's scale (input 1) ones,
    its bias (input 2) zeros, everything else BERT's normal(0, 0.02)."""
    if consumers and all(op == "LayerNormalization" and i == 1 for op, i in consumers):
        return {"init": "ones"}
    if consumers and all(op == "LayerNormalization" and i == 2 for op, i in consumers):
        return {"init": "zeros"}
    if any(op == "LayerNormalization" for op, _ in consumers):
        raise SystemExit(f"initializer {name!r} feeds a LayerNormalization and other nodes: {consumers}")
    return {"init": "normal", "mean": 0.0, "std": STD}


def strip(model: onnx.ModelProto) -> dict:
    """Drop the data of the model's large float initializers in place; return the refill table."""
    consumers: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node.op_type, i))
    tensors = []
    for t in model.graph.initializer:
        arr = numpy_helper.to_array(t)
        if arr.dtype.kind != "f" or arr.size < REFILL_MIN_ELEMENTS:
            continue
        tensors.append({"name": t.name, "dtype": str(arr.dtype), "shape": list(arr.shape),
                        **refill_rule(t.name, consumers.get(t.name, []))})
        stub = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims)
        t.CopyFrom(stub)
    return {"seed": SEED,
            "seed_rule": "tensor k of this list (from 0) is drawn by numpy.random.default_rng([seed, k])",
            "tensors": tensors}


def write_table(path: pathlib.Path, table: dict) -> None:
    """The refill table as JSON, one tensor a line (readable in a diff)."""
    rows = ",\n  ".join(json.dumps(t) for t in table["tensors"])
    head = json.dumps({k: v for k, v in table.items() if k != "tensors"})[:-1]
    path.write_text(f'{head},\n "tensors": [\n  {rows}\n]}}\n')


def drop_debug_notes(model: onnx.ModelProto) -> None:
    """Clear the exporter's per-node and per-value ``metadata_props`` (source locations)."""
    for node in model.graph.node:
        del node.metadata_props[:]
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        del value.metadata_props[:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    args = ap.parse_args(argv)
    stem = "minilm_l6" if args.exporter == "dynamo" else "minilm_l6_torchscript"
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp()) / f"{stem}.onnx"
    feed, expected = export(args.exporter, tmp)
    full = onnx.load(str(tmp))
    check_export(full, feed, expected)
    model = onnx.load(str(tmp))
    model.doc_string = (f"all-MiniLM-L6-v2-shaped BERT exported by torch ({args.exporter}); large float "
                        f"initializers stripped: refill them with benchmarks/minilm.py ({stem}.refill.json)")
    table = strip(model)
    drop_debug_notes(model)
    onnx.save(model, str(OUT / f"{stem}.skeleton.onnx"))
    write_table(OUT / f"{stem}.refill.json", table)
    check_refill(stem, full)
    size = (OUT / f"{stem}.skeleton.onnx").stat().st_size
    print(f"wrote {OUT / stem}.skeleton.onnx ({size / 1e3:.0f} kB, {len(table['tensors'])} tensors stripped) "
          f"and {stem}.refill.json")
    return 0


def check_export(model: onnx.ModelProto, feed: dict, expected: np.ndarray) -> None:
    """onnxruntime on the full export agrees with torch (the export itself is sound)."""
    import onnxruntime
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, feed)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def check_refill(stem: str, full: onnx.ModelProto) -> None:
    """The loader rebuilds the exported model's every tensor shape and dtype (values redrawn)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from minilm import load_minilm  # noqa: PLC0415
    refilled = {t.name: numpy_helper.to_array(t) for t in load_minilm(stem).graph.initializer}
    for t in full.graph.initializer:
        want = numpy_helper.to_array(t)
        got = refilled[t.name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise SystemExit(f"refilled {t.name!r}: {got.dtype}{got.shape}, exported {want.dtype}{want.shape}")


if __name__ == "__main__":
    sys.exit(main())
