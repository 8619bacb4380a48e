"""Build the small com.microsoft models under tests/data/contrib/ the way users get them.

Tiny random-weight BERT and GPT-2 configs (transformers), exported by torch to ONNX, then passed
through onnxruntime's transformer optimizer (``onnxruntime.transformers.optimizer.optimize_model``),
which fuses them into EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu /
FastGelu and LayerNormalization.  The float16 twins go through the optimizer's
``convert_float_to_float16`` with the ops that onnxruntime's CPU provider runs in float32 only
kept in float32 (Cast nodes around them), so onnxruntime can run them as the oracle.

Needs torch and transformers (not the default test dependencies):

    pip install torch==2.13.0 transformers      # or: pip install -e ".[export]"
    python scripts/make_contrib_models.py            # writes tests/data/contrib/*.onnx

The default tests (tests/contrib/test_contrib_models.py) run the committed files; this script
is run again only to change them.  Weights are seeded, so a rerun writes the same models up to
exporter changes.
"""
from __future__ import annotations

import argparse
import pathlib
import tempfile

import numpy as np
import onnx

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "contrib"
HIDDEN, HEADS, LAYERS, VOCAB, POSITIONS = 32, 2, 2, 96, 64
# com.microsoft ops whose onnxruntime CPU kernels are float32 only: kept float32 in fp16 models
FLOAT32_ONLY = ["Attention", "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu",
                "MultiHeadAttention"]


def _bert():
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                     num_attention_heads=HEADS, intermediate_size=4 * HIDDEN,
                     max_position_embeddings=POSITIONS, type_vocab_size=2, attn_implementation="eager")

    class Bert(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = BertModel(cfg)

        def forward(self, input_ids, attention_mask, token_type_ids):
            o = self.m(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=token_type_ids, return_dict=True)
            return o.last_hidden_state, o.pooler_output

    model = Bert().eval()
    ids = torch.randint(0, VOCAB, (2, 7))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    outputs = ["last_hidden_state", "pooler_output"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    axes["pooler_output"] = {0: "batch"}
    return model, args, names, outputs, axes, "bert"


def _gpt2():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
                     use_cache=False, attn_implementation="eager")
    model = GPT2LMHeadModel(cfg).eval()

    class LogitsOnly(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    ids = torch.randint(0, VOCAB, (2, 7))
    names = ["input_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"}
    return LogitsOnly(model).eval(), (ids, torch.ones_like(ids)), names, ["logits"], axes, "gpt2"


def export(builder, tmp: pathlib.Path) -> tuple[pathlib.Path, str]:
    import torch
    model, args, names, outputs, axes, kind = builder()
    path = tmp / f"{kind}_raw.onnx"
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False, do_constant_folding=True)
    return path, kind


def optimize(raw: pathlib.Path, kind: str, fp16: bool) -> onnx.ModelProto:
    from onnxruntime.transformers.optimizer import optimize_model
    opt = optimize_model(str(raw), model_type=kind, num_heads=HEADS, hidden_size=HIDDEN, opt_level=0)
    if fp16:
        opt.convert_float_to_float16(keep_io_types=True, op_block_list=FLOAT32_ONLY)
    return opt.model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        for builder in (_bert, _gpt2):
            raw, kind = export(builder, pathlib.Path(d))
            for fp16 in (False, True):
                m = optimize(raw, kind, fp16)
                name = a.out / f"{kind}_{'fp16' if fp16 else 'fp32'}.onnx"
                onnx.save(m, str(name))
                ops = sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in m.graph.node})
                print(f"{name.name}: {name.stat().st_size / 1024:.0f} KiB, ops {ops}")
    np.random.seed(0)


if __name__ == "__main__":
    main()
