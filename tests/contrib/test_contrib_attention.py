"""Contrib attention ops against onnxruntime's CPU provider, seeded random configurations:
masks in each format, past lengths, causal, attention bias, GQA with a KV cache of ragged
lengths, rotary, local windows and softcap."""
import numpy as np
import pytest
from onnx import TensorProto

from support.harness import F16, F32, I32, I64, Case, node, pick, rnd, run_family


def _mask(rng, b, s, t):
    """A key mask in one of onnxruntime's formats, or None; every row keeps a key."""
    kind = pick(rng, [None, "lengths", "raw", "raw3", "startend"])
    if kind == "lengths":
        return rng.integers(1, t + 1, size=b).astype(I32)
    if kind == "startend":
        ends = rng.integers(1, t + 1, size=b)
        starts = np.array([rng.integers(0, e) for e in ends])
        return np.concatenate([ends, starts]).astype(I32)
    if kind == "raw":
        m = (rng.random((b, t)) < 0.8).astype(I32)
        m[:, 0] = 1
        return m
    if kind == "raw3":
        m = (rng.random((b, s, t)) < 0.8).astype(I32)
        m[..., 0] = 1
        return m
    return None


def gen_attention(rng):
    b, s, n = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(pick(rng, [1, 2, 4]))
    d = int(pick(rng, [2, 4, 8]))
    hin = int(pick(rng, [4, 8, 12]))
    h = n * d
    past_len = int(pick(rng, [0, 0, 1, 3]))
    t = past_len + s
    feeds = {"input": rnd(rng, [b, s, hin])}
    consts = {"weights": rnd(rng, [hin, 3 * h], scale=0.5), "bias": rnd(rng, [3 * h], scale=0.2)}
    inputs = ["input", "weights", "bias"]
    mask = _mask(rng, b, s, t)
    inputs.append("mask" if mask is not None else "")
    if mask is not None:
        feeds["mask"] = mask
    if past_len:
        feeds["past"] = rnd(rng, [2, b, n, past_len, d])
        inputs.append("past")
    else:
        inputs.append("")
    if rng.random() < 0.3:
        feeds["attention_bias"] = rnd(rng, [pick(rng, [1, b]), pick(rng, [1, n]), s, t])
        inputs.append("attention_bias")
    while inputs[-1] == "":
        inputs.pop()
    uni = int(rng.random() < 0.4)
    scale = None if rng.random() < 0.7 else float(rng.uniform(0.1, 1.0))
    outputs = ["Y", "present"] if past_len or rng.random() < 0.5 else ["Y"]
    return Case(node("Attention", inputs, outputs, num_heads=n, unidirectional=uni, scale=scale),
                feeds, consts)


def gen_mha(rng):
    b, s, n = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(pick(rng, [1, 2, 4]))
    d = int(pick(rng, [2, 4, 8]))
    h = n * d
    layout = pick(rng, ["separate", "separate", "packed_kv", "packed_qkv", "bnsh"])
    cross = layout in ("separate", "packed_kv", "bnsh") and rng.random() < 0.5
    L = int(rng.integers(1, 6)) if cross else s
    feeds, inputs = {}, []
    if layout == "packed_qkv":
        feeds["query"] = rnd(rng, [b, s, n, 3, d])
        inputs = ["query", "", ""]
    elif layout == "packed_kv":
        feeds["query"] = rnd(rng, [b, s, h])
        feeds["key"] = rnd(rng, [b, L, n, 2, d])
        inputs = ["query", "key", ""]
    elif layout == "bnsh":
        feeds["query"] = rnd(rng, [b, s, h])
        feeds["key"], feeds["value"] = rnd(rng, [b, n, L, d]), rnd(rng, [b, n, L, d])
        inputs = ["query", "key", "value"]
    else:
        feeds["query"] = rnd(rng, [b, s, h])
        feeds["key"], feeds["value"] = rnd(rng, [b, L, h]), rnd(rng, [b, L, h])
        inputs = ["query", "key", "value"]
    if layout == "separate" and rng.random() < 0.5:
        feeds["bias"] = rnd(rng, [3 * h], scale=0.2)
        inputs.append("bias")
    else:
        inputs.append("")
    past_len = int(pick(rng, [0, 2])) if layout == "separate" and not cross else 0
    t = L + past_len
    mask = None
    if rng.random() < 0.5:
        mask = rng.integers(1, t + 1, size=b).astype(I32) if rng.random() < 0.5 else \
            np.concatenate([np.ones((b, 1)), (rng.random((b, t - 1)) < 0.8)], axis=1).astype(I32)
        feeds["key_padding_mask"] = mask
    inputs.append("key_padding_mask" if mask is not None else "")
    if rng.random() < 0.3:
        feeds["attention_bias"] = rnd(rng, [pick(rng, [1, b]), pick(rng, [1, n]), s, t])
        inputs.append("attention_bias")
    else:
        inputs.append("")
    outputs = ["Y"]
    if past_len:
        feeds["past_key"], feeds["past_value"] = rnd(rng, [b, n, past_len, d]), rnd(rng, [b, n, past_len, d])
        inputs += ["past_key", "past_value"]
        outputs += ["present_key", "present_value"]
    while inputs[-1] == "":
        inputs.pop()
    uni = int(not cross and rng.random() < 0.3)
    return Case(node("MultiHeadAttention", inputs, outputs, num_heads=n, unidirectional=uni), feeds,
                note=f"layout {layout} cross {cross}")


def _rope_caches(rng, max_pos, half, dt):
    inv = 1.0 / (10000 ** (np.arange(half) / half))
    ang = np.arange(max_pos)[:, None] * inv[None]
    return np.cos(ang).astype(dt), np.sin(ang).astype(dt)


def gen_rotary(rng):
    b, s, n = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(pick(rng, [1, 2, 3]))
    d = int(pick(rng, [4, 8, 16]))
    dt = pick(rng, [F32, F32, F16])
    max_pos = s + int(rng.integers(0, 8))
    rd = d if rng.random() < 0.7 else d // 2
    cos, sin = _rope_caches(rng, max_pos, rd // 2, dt)
    four = rng.random() < 0.4
    x = rnd(rng, [b, n, s, d] if four else [b, s, n * d], dt)
    if rng.random() < 0.5:
        pid = rng.integers(0, max_pos - s + 1, size=(b, s)).astype(I64)
    else:
        pid = np.array([int(rng.integers(0, max_pos - s + 1))], I64)
    attrs = dict(interleaved=int(rng.random() < 0.5))
    if rd != d:
        attrs["rotary_embedding_dim"] = rd
        attrs["num_heads"] = n
    elif not four and rng.random() < 0.5:
        attrs["num_heads"] = n
    return Case(node("RotaryEmbedding", ["input", "position_ids", "cos", "sin"], ["Y"], **attrs),
                {"input": x, "position_ids": pid}, {"cos": cos, "sin": sin},
                rtol=2e-3 if dt == F16 else None)


def gen_gqa(rng):
    b = int(rng.integers(1, 4))
    n_kv = int(pick(rng, [1, 2]))
    n = n_kv * int(pick(rng, [1, 2, 4]))
    d = int(pick(rng, [16, 32]))   # onnxruntime: head size a multiple of 8 (16 with rotary)
    dt = pick(rng, [F32, F32, F16])
    phase = pick(rng, ["prompt", "decode", "decode", "chunk"])
    if phase == "chunk":   # onnxruntime: several new tokens after a past only for batch 1
        b = 1
    buf = int(rng.integers(6, 12))
    if phase == "prompt":
        s = int(rng.integers(1, 6))
        lens = np.full(b, s) if rng.random() < 0.5 else rng.integers(1, s + 1, size=b)
        lens[0] = s
        total, past = s, None
    else:
        s = 1 if phase == "decode" else int(rng.integers(2, 4))
        pasts = rng.integers(0, buf - s + 1, size=b)
        lens = pasts + s
        total = int(lens.max())
        past = buf
    feeds = {}
    packed = rng.random() < 0.3
    if packed:
        feeds["query"] = rnd(rng, [b, s, (n + 2 * n_kv) * d], dt)
        inputs = ["query", "", ""]
    else:
        feeds["query"] = rnd(rng, [b, s, n * d], dt)
        feeds["key"], feeds["value"] = rnd(rng, [b, s, n_kv * d], dt), rnd(rng, [b, s, n_kv * d], dt)
        inputs = ["query", "key", "value"]
    if past is not None:
        feeds["past_key"] = rnd(rng, [b, n_kv, past, d], dt)
        feeds["past_value"] = rnd(rng, [b, n_kv, past, d], dt)
        inputs += ["past_key", "past_value"]
    else:
        inputs += ["", ""]
    feeds["seqlens_k"] = (lens - 1).astype(I32)
    feeds["total_sequence_length"] = np.array(total, I32)
    inputs += ["seqlens_k", "total_sequence_length"]
    attrs = dict(num_heads=n, kv_num_heads=n_kv)
    if rng.random() < 0.4:
        cos, sin = _rope_caches(rng, 16, d // 2, dt)
        feeds["cos"], feeds["sin"] = cos, sin
        inputs += ["cos", "sin"]
        attrs.update(do_rotary=1, rotary_interleaved=int(rng.random() < 0.5))
    if rng.random() < 0.2:
        attrs["local_window_size"] = int(rng.integers(1, 4))
    if rng.random() < 0.2:
        attrs["softcap"] = float(rng.uniform(1.0, 5.0))
    if rng.random() < 0.2:
        attrs["smooth_softmax"] = 1
    extras = {}
    if attrs.get("do_rotary") and rng.random() < 0.4:
        extras["position_ids"] = (np.arange(s)[None] + (lens - s).clip(0)[:, None]).astype(I64)
    if rng.random() < 0.3:
        extras["attention_bias"] = rnd(rng, [pick(rng, [1, b]), pick(rng, [1, n]), s, total], dt)
    if rng.random() < 0.2:
        extras["head_sink"] = rnd(rng, [n], dt)
    if extras:
        if "cos" not in feeds:
            inputs += ["", ""]
        for name in ("position_ids", "attention_bias", "head_sink"):
            inputs.append(name if name in extras else "")
        while inputs[-1] == "":
            inputs.pop()
        feeds.update(extras)
    outputs = ["Y", "present_key", "present_value"]
    if rng.random() < 0.2:
        attrs["qk_output"] = int(rng.integers(1, 3))
        outputs.append("qk")

    def post(outs):
        """Positions past each row's valid length are undefined in the present caches."""
        outs = [np.array(o) for o in outs]
        for o in outs[1:3]:
            for i in range(b):
                o[i, :, lens[i]:] = 0
        if phase == "prompt":  # query rows past a row's length are padding
            for i in range(b):
                outs[0][i, lens[i]:] = 0
        if len(outs) > 3:   # scores of keys outside a row's window are undefined
            for i in range(b):
                outs[3][i, ..., lens[i]:] = 0
                if phase == "prompt":
                    outs[3][i, :, lens[i]:] = 0
        return outs

    return Case(node("GroupQueryAttention", inputs, outputs, **attrs),
                feeds, rtol=3e-3 if dt == F16 else 1e-4, atol=3e-3 if dt == F16 else 1e-5,
                post=post, note=f"phase {phase} lens {lens.tolist()}")


FAMILIES = {"Attention": gen_attention, "MultiHeadAttention": gen_mha, "RotaryEmbedding": gen_rotary,
            "GroupQueryAttention": gen_gqa}


@pytest.mark.parametrize("name", FAMILIES)
def test_matches_onnxruntime(name):
    run_family(FAMILIES[name], name, count=40, minimum=20)


def gen_dmmha(rng):
    n, d = int(pick(rng, [1, 2, 4])), int(pick(rng, [4, 8]))
    h = n * d
    kind = pick(rng, ["self", "self", "self_beam", "packed", "cross"])
    beam = int(rng.integers(2, 4)) if kind == "self_beam" else 1
    batch = int(rng.integers(1, 3))
    b = batch * beam
    feeds, inputs = {}, []
    attrs = dict(num_heads=n)
    outputs = ["Y"]
    if kind == "cross":
        L = int(rng.integers(1, 7))
        feeds["query"] = rnd(rng, [b, 1, h])
        feeds["key"], feeds["value"] = rnd(rng, [b, n, L, d]), rnd(rng, [b, n, L, d])
        inputs = ["query", "key", "value"]
        t = L
    else:
        m = int(rng.integers(4, 9))
        p = int(rng.integers(0, m))
        t = p + 1
        if kind == "packed":
            feeds["query"] = rnd(rng, [b, 1, 3 * h])
            inputs = ["query", "", ""]
        else:
            feeds["query"], feeds["key"], feeds["value"] = (rnd(rng, [b, 1, h]) for _ in range(3))
            inputs = ["query", "key", "value"]
        feeds["past_key"], feeds["past_value"] = rnd(rng, [b, n, m, d]), rnd(rng, [b, n, m, d])
        feeds["past_sequence_length"] = np.array(p, I32)
        attrs["past_present_share_buffer"] = 1
        outputs += ["present_key", "present_value"]
    if kind != "cross" and rng.random() < 0.4:
        mask = (rng.random((b, t)) < 0.8).astype(I32)
        mask[:, -1] = 1
        feeds["mask_index"] = mask
        inputs.append("mask_index")
    else:
        inputs.append("")
    if rng.random() < 0.3:
        # with beams, onnxruntime reads one bias row per beam group
        feeds["attention_bias"] = rnd(rng, [pick(rng, [1, batch if beam > 1 else b]), n, 1, t])
        inputs.append("attention_bias")
    else:
        inputs.append("")
    if kind != "cross":
        inputs += ["past_key", "past_value", "past_sequence_length"]
        if kind == "self_beam":
            feeds["beam_width"] = np.array(beam, I32)
            feeds["cache_indirection"] = rng.integers(0, beam, size=(batch, beam, feeds["past_key"].shape[2])).astype(I32)
            inputs += ["beam_width", "cache_indirection"]
    if kind != "cross" and rng.random() < 0.4:
        inputs += [""] * (10 - len(inputs))
        feeds["bias"] = rnd(rng, [3 * h], scale=0.3)
        inputs.append("bias")
    while inputs[-1] == "":
        inputs.pop()
    if rng.random() < 0.3 and kind != "cross":
        attrs["output_qk"] = 1
        outputs.append("qk")
    return Case(node("DecoderMaskedMultiHeadAttention", inputs, outputs, **attrs), feeds, note=kind)


FAMILIES["DecoderMaskedMultiHeadAttention"] = gen_dmmha


def _sparse_layouts(rng, n_layouts, n_rows):
    """CSR block layouts: each block row links its diagonal block, block 0, and random blocks
    before it."""
    ptrs, cols = [], []
    for _ in range(n_layouts):
        ptr, col = [0], []
        for r in range(n_rows):
            linked = sorted({0, r} | {int(c) for c in range(r) if rng.random() < 0.4})
            col += linked
            ptr.append(len(col))
        ptrs.append(ptr)
        cols.append(col)
    width = max(len(c) for c in cols)
    cols = [c + [-1] * (width - len(c)) for c in cols]
    return np.array(ptrs, I32), np.array(cols, I32)


def gen_sparse_attention(rng):
    b = int(rng.integers(1, 4))
    n_kv = int(pick(rng, [1, 2]))
    n = n_kv * int(pick(rng, [1, 2]))
    d = int(pick(rng, [16, 32]))
    block = int(pick(rng, [16, 32]))
    n_rows = int(rng.integers(2, 4))
    max_len = block * n_rows
    dt = pick(rng, [F32, F32, F16])
    if rng.random() < 0.5:
        s = int(rng.integers(1, max_len + 1))
        totals = np.full(b, s)
    else:   # decoding: one length for the whole batch (with ragged lengths and batch > 1,
        s = 1   # onnxruntime's CPU kernel reads keys we cannot account for; not compared)
        totals = np.full(b, int(rng.integers(1, max_len + 1)))
    feeds = {"query": rnd(rng, [b, s, n * d], dt), "key": rnd(rng, [b, s, n_kv * d], dt),
             "value": rnd(rng, [b, s, n_kv * d], dt),
             "past_key": rnd(rng, [b, n_kv, max_len, d], dt), "past_value": rnd(rng, [b, n_kv, max_len, d], dt)}
    rows, cols = _sparse_layouts(rng, int(pick(rng, [1, n])), n_rows)
    feeds.update(block_row_indices=rows, block_col_indices=cols,
                 total_sequence_length=np.array(int(totals.max()), I32),
                 key_total_sequence_lengths=totals.astype(I32))
    attrs = dict(num_heads=n, kv_num_heads=n_kv, sparse_block_size=block)
    if rng.random() < 0.4:
        inv = 1.0 / (10000 ** (np.arange(d // 2) / (d // 2)))
        ang = np.arange(max_len)[:, None] * inv[None]
        feeds["cos"], feeds["sin"] = np.cos(ang).astype(dt), np.sin(ang).astype(dt)
        attrs.update(do_rotary=1, rotary_interleaved=int(rng.random() < 0.5))
    node_ = node("SparseAttention", list(feeds), ["Y", "present_key", "present_value"], **attrs)
    return Case(node_, feeds, rtol=3e-3 if dt == F16 else 1e-4, atol=3e-3 if dt == F16 else 1e-5,
                note=f"totals {totals.tolist()} block {block}")


def _ort_shared_buffer_run(case):
    """onnxruntime's CPU SparseAttention writes the KV cache in place: bind each past and its
    present to one OrtValue."""
    import onnxruntime
    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = onnxruntime.InferenceSession(case.model().SerializeToString(), so, providers=["CPUExecutionProvider"])
        io = sess.io_binding()
        caches = {}
        for name, value in case.feeds.items():
            if name in ("past_key", "past_value"):
                caches[name] = onnxruntime.OrtValue.ortvalue_from_numpy(value.copy())
                io.bind_ortvalue_input(name, caches[name])
            else:
                io.bind_cpu_input(name, value)
        io.bind_output("Y")
        io.bind_ortvalue_output("present_key", caches["past_key"])
        io.bind_ortvalue_output("present_value", caches["past_value"])
        sess.run_with_iobinding(io)
        return io.copy_outputs_to_cpu()
    except Exception:  # noqa: BLE001 - a configuration onnxruntime refuses is not counted
        return None


def test_sparse_attention_matches_onnxruntime():
    from support.harness import compare, draw, ortgpu_run
    ran = 0
    for i in range(30):
        case = draw(gen_sparse_attention, "SparseAttention", i)
        expected = _ort_shared_buffer_run(case)
        if expected is None:
            continue
        try:
            compare(case, expected, ortgpu_run(case))
        except AssertionError as e:
            raise AssertionError(f"SparseAttention configuration {i}: {case.describe()}\n{e}") from e
        ran += 1
    assert ran >= 15, f"only {ran} of 30 configurations ran in onnxruntime"
