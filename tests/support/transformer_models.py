"""Transformer (and ResNet-50) models built with torch from configs with random weights, exported
to ONNX, cached by versions; inputs made deterministically.

Models (``MODELS``):
  bert_base    BertModel, BertConfig() defaults (12 layers, hidden 768), sequence 128
  minilm       BertModel in all-MiniLM-L6's shape (6 layers, hidden 384, 12 heads), BERT's inputs;
               not in MODELS: the precision tests use it for sentence-embedding cosine similarity
  gpt2_decode  GPT2LMHeadModel, GPT2Config() defaults, one decode step: one new token per row and a
               KV cache (``past_key_values.{i}.key|value`` in, ``present.{i}.key|value`` out)
  vit_base     ViTModel, ViTConfig() defaults (224x224, patch 16)
  resnet50     a torchvision-equivalent ResNet-50 defined here (torchvision is optional)

Weights come from the libraries' own initializers after ``torch.manual_seed(SEED)``; attention is
forced to the "eager" implementation so the exported graph is plain MatMul/Softmax. Export uses the
TorchScript exporter (``dynamo=False``, opset ``OPSET``) with a dynamic batch (and a dynamic past
length for GPT-2), so one file serves batch 1 and 32. Files are cached in
``$ORTGPU_TRANSFORMER_CACHE`` (default ``~/.cache/ortgpu/transformers``) under a key of the
torch, transformers and onnx versions; a lock file keeps parallel test workers from exporting twice.

torch and transformers are imported lazily: importing this module needs neither.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

SEED = 0
OPSET = 17
FORMAT = 1          # bump when an export changes, to invalidate the caches
SEQ_LEN = 128       # BERT sequence length
PAST_LEN = 128      # GPT-2 cached tokens before the decode step
MODELS = ("bert_base", "gpt2_decode", "vit_base", "resnet50")
TRANSFORMERS = ("bert_base", "gpt2_decode", "vit_base")


def versions() -> dict[str, str]:
    import onnx  # noqa: PLC0415
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "opset": str(OPSET), "format": str(FORMAT)}


def cache_dir() -> str:
    root = os.environ.get("ORTGPU_TRANSFORMER_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "ortgpu", "transformers")
    v = versions()
    key = f"torch{v['torch']}-tf{v['transformers']}-onnx{v['onnx']}-op{OPSET}-f{FORMAT}".replace("+", "_")
    d = os.path.join(root, key)
    os.makedirs(d, exist_ok=True)
    return d


# --- torch modules ----------------------------------------------------------------------------
def torch_model(name: str):
    """The seeded torch module (eval mode, on the CPU) whose forward takes the inputs of
    ``make_inputs(name)`` by position, in order, and returns the outputs of ``output_names(name)``."""
    import torch  # noqa: PLC0415
    torch.manual_seed(SEED)
    builder = {"bert_base": _bert, "minilm": _minilm, "gpt2_decode": _gpt2, "vit_base": _vit,
               "resnet50": _resnet50}[name]
    return builder().eval()


def _minilm():
    return _bert(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)


def _bert(**config):
    import torch  # noqa: PLC0415
    from transformers import BertConfig, BertModel  # noqa: PLC0415

    class Bert(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = BertModel(BertConfig(attn_implementation="eager", **config))

        def forward(self, input_ids, attention_mask, token_type_ids):
            o = self.m(input_ids=input_ids, attention_mask=attention_mask,
                       token_type_ids=token_type_ids, return_dict=True)
            return o.last_hidden_state, o.pooler_output

    return Bert()


def _gpt2_config():
    from transformers import GPT2Config  # noqa: PLC0415
    return GPT2Config(attn_implementation="eager")


def _gpt2():
    import torch  # noqa: PLC0415
    from transformers import DynamicCache, GPT2LMHeadModel  # noqa: PLC0415
    cfg = _gpt2_config()
    layers = cfg.n_layer

    class Gpt2Decode(torch.nn.Module):
        """One decode step; the KV cache travels as 2 * n_layer flat tensors."""

        def __init__(self):
            super().__init__()
            self.m = GPT2LMHeadModel(cfg)

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache()
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            o = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       past_key_values=cache, use_cache=True, return_dict=True)
            outs = [o.logits]
            for i in range(layers):
                outs += list(_layer_kv(o.past_key_values, i))
            return tuple(outs)

    return Gpt2Decode()


def _layer_kv(cache, i):
    """(key, value) of layer i across transformers versions' cache layouts."""
    if hasattr(cache, "layers"):
        return cache.layers[i].keys, cache.layers[i].values
    if hasattr(cache, "key_cache"):
        return cache.key_cache[i], cache.value_cache[i]
    return cache[i][0], cache[i][1]


def _vit():
    import torch  # noqa: PLC0415
    from transformers import ViTConfig, ViTModel  # noqa: PLC0415

    class Vit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = ViTModel(ViTConfig(attn_implementation="eager"))

        def forward(self, pixel_values):
            o = self.m(pixel_values=pixel_values, return_dict=True)
            return o.last_hidden_state, o.pooler_output

    return Vit()


def _resnet50():
    """ResNet-50 v1.5 (stride on the 3x3 of each bottleneck), as torchvision lays it out."""
    from torch import nn  # noqa: PLC0415

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.body(x) + self.down(x))

    layers, cin = [], 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
            cin = width * 4
    net = nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1), *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))
    # Fresh BatchNorm statistics (mean 0, var 1) would let activations grow through 50 layers:
    # calibrate them on one random batch (momentum None keeps exactly that batch's statistics),
    # after giving the affine parameters non-trivial values so that folding them is exercised.
    import torch  # noqa: PLC0415
    g = torch.Generator().manual_seed(SEED)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            m.weight.data.copy_(0.5 + 0.5 * torch.rand(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 3, 224, 224, generator=g))
    net.eval()
    return net


# --- inputs and names -------------------------------------------------------------------------
def _gpt2_dims():
    cfg = _gpt2_config()
    return cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.vocab_size


def input_names(name: str) -> list[str]:
    if name in ("bert_base", "minilm"):
        return ["input_ids", "attention_mask", "token_type_ids"]
    if name == "gpt2_decode":
        layers = _gpt2_dims()[0]
        return ["input_ids", "attention_mask", "position_ids"] + [
            f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    if name == "vit_base":
        return ["pixel_values"]
    if name == "resnet50":
        return ["input"]
    raise KeyError(name)


def output_names(name: str) -> list[str]:
    if name in ("bert_base", "minilm", "vit_base"):
        return ["last_hidden_state", "pooler_output"]
    if name == "gpt2_decode":
        layers = _gpt2_dims()[0]
        return ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    if name == "resnet50":
        return ["logits"]
    raise KeyError(name)


def make_inputs(name: str, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic feeds (NumPy) for `name` at `batch` rows; masks have some padding so the
    masking path is exercised."""
    rng = np.random.default_rng(seed)
    if name in ("bert_base", "minilm"):
        ids = rng.integers(0, 30522, (batch, SEQ_LEN)).astype(np.int64)
        mask = np.ones((batch, SEQ_LEN), np.int64)
        mask[0, SEQ_LEN - 28:] = 0  # the first row is padded
        types = np.zeros((batch, SEQ_LEN), np.int64)
        types[:, SEQ_LEN // 2:] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if name == "gpt2_decode":
        layers, heads, dim, vocab = _gpt2_dims()
        feed = {"input_ids": rng.integers(0, vocab, (batch, 1)).astype(np.int64),
                "attention_mask": np.ones((batch, PAST_LEN + 1), np.int64),
                "position_ids": np.full((batch, 1), PAST_LEN, np.int64)}
        feed["attention_mask"][0, :5] = 0  # left padding on the first row
        for i in range(layers):
            for kv in ("key", "value"):
                feed[f"past_key_values.{i}.{kv}"] = rng.standard_normal(
                    (batch, heads, PAST_LEN, dim)).astype(np.float32)
        return feed
    if name == "vit_base":
        return {"pixel_values": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    if name == "resnet50":
        return {"input": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    raise KeyError(name)


def _dynamic_axes(name: str) -> dict:
    axes = {n: {0: "batch"} for n in input_names(name) + output_names(name)}
    if name == "gpt2_decode":
        axes["attention_mask"] = {0: "batch", 1: "total_len"}
        for n in input_names(name)[3:]:
            axes[n] = {0: "batch", 2: "past_len"}
        for n in output_names(name)[1:]:
            axes[n] = {0: "batch", 2: "total_len"}
    return axes


# --- export -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path: str):
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # not POSIX: no lock, the atomic rename still keeps the file whole
        yield
        return
    with open(path + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def export(name: str) -> str:
    """Path of the exported ONNX model for `name`, exporting it on first use."""
    import torch  # noqa: PLC0415
    path = os.path.join(cache_dir(), name + ".onnx")
    if os.path.exists(path):
        return path
    with _locked(path):
        if os.path.exists(path):
            return path
        model = torch_model(name)
        # Trace with batch 2 so that no size-1 dimension gets specialized.
        args = tuple(torch.from_numpy(v) for v in make_inputs(name, batch=2).values())
        tmp = path + ".part"
        with torch.no_grad():
            export_with_fallbacks(torch.onnx.export, model, args, tmp, opset_version=OPSET,
                                  input_names=input_names(name), output_names=output_names(name),
                                  dynamic_axes=_dynamic_axes(name), do_constant_folding=True)
        os.replace(tmp, path)
    return path


def export_with_fallbacks(export, model, args, path, **kwargs) -> str:
    """torch.onnx.export with the TorchScript exporter (``dynamo=False``: what the committed
    tests were written against); on a torch whose export has no ``dynamo`` argument (older),
    without it; on a torch whose TorchScript exporter fails or is gone (newer), with the
    dynamo exporter (it takes ``dynamic_axes`` too).  Returns which one wrote `path`."""
    try:
        export(model, args, path, dynamo=False, **kwargs)
        return "torchscript"
    except TypeError as e:
        if "dynamo" not in str(e):
            raise
        export(model, args, path, **kwargs)
        return "default"
    except Exception as first:  # noqa: BLE001 - the TorchScript path is deprecated upstream
        dynamo_kwargs = {k: v for k, v in kwargs.items() if k != "do_constant_folding"}
        try:
            export(model, args, path, dynamo=True, **dynamo_kwargs)
        except Exception as second:
            raise second from first
        return "dynamo"


def torch_outputs(name: str, feed: dict[str, np.ndarray], model=None, device: str = "cpu") -> list[np.ndarray]:
    """The torch module's own outputs on `feed` (a third reference beside the ONNX runtimes)."""
    import torch  # noqa: PLC0415
    model = model if model is not None else torch_model(name)
    model = model.to(device)
    with torch.no_grad():
        outs = model(*[torch.from_numpy(feed[n]).to(device) for n in input_names(name)])
    if isinstance(outs, torch.Tensor):
        outs = (outs,)
    return [o.detach().cpu().numpy() for o in outs]
