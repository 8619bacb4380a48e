"""Generation loops of onnxruntime's com.microsoft domain over a GPT-style decoder subgraph:
GreedySearch and BeamSearch (model_type 0, decoder only); and WhisperBeamSearch over an
encoder subgraph and a decoder subgraph (model_type 2).

The decoder subgraph has onnxruntime's GPT-2 interface: inputs input_ids (B, S) int32,
position_ids (B, S) int32, attention_mask (B, T) int32 and one past per layer
(2, B, N, P, D); outputs logits (B, S, V) and one present per layer (2, B, N, P + S, D).  The
first step feeds the whole prompt with empty pasts (P = 0); each later step feeds the chosen
tokens with the presents of the step before.  Positions count the prompt's unmasked tokens
(left padding gets position 0).  Scores pass through onnxruntime's logits processors in its
order: repetition penalty, no-repeat n-gram, vocabulary mask, prefix mask (first step), minimum
length.

WhisperBeamSearch runs the encoder subgraph once on the audio features and the decoder's start
tokens (decoder_input_ids, else decoder_start_token_id): it returns the first logits, the
encoder's hidden states and each layer's self- and cross-attention caches.  Each later step
feeds the decoder subgraph the chosen tokens (or the whole sequences, when its input_ids are not
(B, 1)), the hidden states when it takes them, and the caches: the self caches it returns
replace the old ones, the cross caches stay.  Beam scoring is BeamSearch's.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"
_I32 = frozenset({"int32"})


def _scalar(x, default, cast=int):
    return default if x is None else cast(np.asarray(x).reshape(-1)[0])


def _past_shape(decoder, batch):
    """(2, batch, N, 0, D) from the decoder's first past input, whose N and D must be fixed."""
    graph = getattr(getattr(decoder, "plan", None), "graph", None)
    if graph is None or len(graph.inputs) < 4:
        raise ValueError("GreedySearch/BeamSearch: the decoder must take input_ids, position_ids, "
                         "attention_mask and the pasts")
    dims = graph.inputs[3].type.tensor_type.shape.dim
    if len(dims) != 5 or not dims[2].HasField("dim_value") or not dims[4].HasField("dim_value"):
        raise ValueError(f"GreedySearch/BeamSearch: decoder input '{graph.inputs[3].name}' must be "
                         f"(2, batch, num_heads, past, head_size) with fixed num_heads and head_size")
    return (2, batch, dims[2].dim_value, 0, dims[4].dim_value), len(graph.inputs) - 3


class _Processors:
    """onnxruntime's logits processors, applied in its order to (rows, V) float32 scores."""

    def __init__(self, *, eos, min_length, repetition_penalty, no_repeat_ngram_size, vocab_mask,
                 prefix_vocab_mask, group=1):
        self.eos, self.min_length = eos, min_length
        self.penalty = repetition_penalty
        self.ngram = no_repeat_ngram_size
        self.vocab_mask = None if vocab_mask is None else np.asarray(vocab_mask).reshape(-1)
        self.prefix = None if prefix_vocab_mask is None else np.repeat(np.asarray(prefix_vocab_mask), group, 0)

    def __call__(self, scores, sequences, step):
        vocab = scores.shape[-1]
        if self.penalty != 1.0:
            for r in range(scores.shape[0]):
                seen = np.unique(sequences[r])
                seen = seen[(seen >= 0) & (seen < vocab)]   # pad ids may lie outside the vocabulary
                s = scores[r, seen]
                scores[r, seen] = np.where(s < 0, s * self.penalty, s / self.penalty)
        if self.ngram > 0 and sequences.shape[1] + 1 >= self.ngram:
            n = self.ngram
            for r in range(scores.shape[0]):
                seq = sequences[r].tolist()
                prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
                for i in range(len(seq) - n + 1):
                    if tuple(seq[i:i + n - 1]) == prefix and 0 <= seq[i + n - 1] < vocab:
                        scores[r, seq[i + n - 1]] = -np.inf
        if self.vocab_mask is not None:
            scores[:, self.vocab_mask == 0] = -np.inf
        if self.prefix is not None and step == 0:
            scores[self.prefix == 0] = -np.inf
        if sequences.shape[1] < self.min_length:
            scores[:, self.eos] = -np.inf
        return scores


def _first_feeds(input_ids, attention_mask, pad_token_id):
    """The first step's attention mask (given, else the prompt's non-pad tokens) and position
    ids, which onnxruntime counts over the non-pad tokens whatever the mask (pads at 0)."""
    tokens = (input_ids != pad_token_id).astype(np.int32)
    mask = tokens if attention_mask is None else np.asarray(attention_mask).astype(np.int32)
    position_ids = np.where(tokens > 0, np.cumsum(tokens, axis=1) - 1, 0).astype(np.int32)
    return mask, position_ids


def _run_decoder(decoder, ids, positions, mask, pasts):
    outs = decoder(ids.astype(np.int32), positions.astype(np.int32), mask.astype(np.int32), *pasts)
    return np.asarray(outs[0]), [np.asarray(p) for p in outs[1:]]


declare_formals(MS, "GreedySearch", ("I", "I", "I", "T", "I", "I", "I"), ("I",))


def _token_by_token(op, input_ids, max_length, attention_mask, decoder, eos_token_id, pad_token_id, process,
                    choose):
    """The greedy / sampling loop: each step's processed scores (B, V) go to choose(scores) for
    the next tokens, until every row picks eos or max_length; as onnxruntime, the eos itself and
    everything after it is written as pad_token_id (where every row ended early, onnxruntime
    leaves the rest of its output unwritten; here it is pad)."""
    ids = np.asarray(input_ids).astype(np.int32)
    b, s = ids.shape
    max_len = _scalar(max_length, s)
    if max_len < s:
        raise ValueError(f"{op}: max_length {max_len} is shorter than the prompt ({s} tokens)")
    past_shape, layers = _past_shape(decoder, b)
    mask, positions = _first_feeds(ids, attention_mask, pad_token_id)
    pasts = [np.zeros(past_shape, np.float32) for _ in range(layers)]
    sequences, feed = ids, ids
    done = np.zeros(b, bool)
    step = 0
    while sequences.shape[1] < max_len and not done.all():
        logits, pasts = _run_decoder(decoder, feed, positions, mask, pasts)
        scores = process(logits[:, -1, :].astype(np.float32).copy(), sequences, step)
        best = choose(scores)
        ended = done | (best == eos_token_id)
        nxt = np.where(ended, pad_token_id, best).astype(np.int32)   # eos is written as pad
        done = ended
        sequences = np.concatenate([sequences, nxt[:, None]], axis=1)
        feed = nxt[:, None]
        positions = positions[:, -1:] + 1
        mask = np.concatenate([mask, np.ones((b, 1), np.int32)], axis=1)
        step += 1
    out = np.full((b, max_len), pad_token_id, np.int32)
    out[:, :sequences.shape[1]] = sequences
    return out


def _decoder_only(op, model_type, encoder):
    if model_type != 0 or encoder is not None:
        raise NotImplementedError(f"{op}: only decoder-only models (model_type=0) are supported")


@kernel("GreedySearch", since=1, domain=MS, provider="cpu", types={"I": _I32, "T": frozenset({"float32"})},
        host_inputs=(0, 1, 2, 3, 4, 5, 6), capturable=False)
def GreedySearch(ctx, input_ids, max_length, min_length=None, repetition_penalty=None, vocab_mask=None,
                 prefix_vocab_mask=None, attention_mask=None, *, decoder, eos_token_id, pad_token_id,
                 model_type=0, no_repeat_ngram_size=0, vocab_size=-1, encoder=None, init_decoder=None,
                 decoder_start_token_id=-1):
    """Append the highest-scoring token until each row picks eos (written as pad) or max_length."""
    _decoder_only("GreedySearch", model_type, encoder)
    process = _Processors(eos=eos_token_id, min_length=_scalar(min_length, 0),
                          repetition_penalty=_scalar(repetition_penalty, 1.0, float),
                          no_repeat_ngram_size=no_repeat_ngram_size, vocab_mask=vocab_mask,
                          prefix_vocab_mask=prefix_vocab_mask)
    return _token_by_token("GreedySearch", input_ids, max_length, attention_mask, decoder, eos_token_id,
                           pad_token_id, process, lambda scores: scores.argmax(axis=-1))


def _top_p_sample(rng, scores, temperature, top_p, min_tokens_to_keep, filter_value):
    """One token per row: softmax(scores / temperature) limited to the smallest set of most
    probable tokens whose mass reaches top_p (at least min_tokens_to_keep), sampled by rng."""
    logits = scores / np.float32(temperature)
    if 0 < top_p < 1:
        order = np.argsort(-logits, axis=-1, kind="stable")
        sorted_logits = np.take_along_axis(logits, order, axis=-1)
        probs = np.exp(_log_softmax(sorted_logits))
        before = np.cumsum(probs, axis=-1) - probs        # mass of the more probable tokens
        drop = before >= top_p
        drop[:, :min_tokens_to_keep] = False
        removed = np.zeros_like(drop)
        np.put_along_axis(removed, order, drop, axis=-1)
        logits = np.where(removed, np.float32(filter_value), logits)
    with np.errstate(invalid="ignore"):
        probs = np.exp(_log_softmax(logits)).astype(np.float64)
    picks = scores.argmax(axis=-1)   # a row with every token banned keeps the greedy pick
    for r, p in enumerate(probs):
        if np.isfinite(p).all():
            picks[r] = rng.choice(p.size, p=p / p.sum())
    return picks


declare_formals(MS, "Sampling", ("I", "I", "I", "T", "I", "I", "I", "I", "I"), ("I", "T"))


@kernel("Sampling", since=1, domain=MS, provider="cpu", types={"I": _I32, "T": frozenset({"float32"})},
        host_inputs=tuple(range(9)), capturable=False)
def Sampling(ctx, input_ids, max_length, min_length=None, repetition_penalty=None, vocab_mask=None,
             prefix_vocab_mask=None, attention_mask=None, presence_mask=None, seed=None, *, decoder,
             eos_token_id, pad_token_id, model_type=0, no_repeat_ngram_size=0, vocab_size=-1, temperature=1.0,
             top_p=0.0, filter_value=-np.inf, min_tokens_to_keep=1, presence_penalty=0.0, custom=0,
             encoder=None, init_decoder=None, decoder_start_token_id=-1):
    """Sample each next token from the processed scores (temperature, nucleus top_p) with a
    NumPy generator seeded by `seed`; the draws differ from onnxruntime's generator, their
    distribution does not."""
    _decoder_only("Sampling", model_type, encoder)
    if custom or presence_mask is not None:
        raise NotImplementedError("Sampling: custom sampling and presence_mask are not supported")
    process = _Processors(eos=eos_token_id, min_length=_scalar(min_length, 0),
                          repetition_penalty=_scalar(repetition_penalty, 1.0, float),
                          no_repeat_ngram_size=no_repeat_ngram_size, vocab_mask=vocab_mask,
                          prefix_vocab_mask=prefix_vocab_mask)
    rng = np.random.default_rng(_scalar(seed, None))
    seqs = _token_by_token("Sampling", input_ids, max_length, attention_mask, decoder, eos_token_id,
                           pad_token_id, process,
                           lambda scores: _top_p_sample(rng, scores, temperature, top_p, min_tokens_to_keep,
                                                        filter_value))
    if ctx.num_outputs > 1:
        raise NotImplementedError("Sampling: the filtered_logits output is not supported")
    return seqs


def _log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    s = x - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


class _Hypotheses:
    """The finished sequences of one prompt, best num_beams kept, scored by their summed log
    probability divided by length ** length_penalty."""

    def __init__(self, num_beams, length_penalty, early_stopping):
        self.num_beams, self.length_penalty, self.early_stopping = num_beams, length_penalty, early_stopping
        self.items: list[tuple[float, np.ndarray]] = []

    def worst(self):
        return min(s for s, _ in self.items) if self.items else np.inf

    def add(self, tokens, sum_logprobs):
        score = sum_logprobs / (len(tokens) ** self.length_penalty)
        if len(self.items) < self.num_beams or score > self.worst():
            self.items.append((score, tokens))
            if len(self.items) > self.num_beams:
                self.items.remove(min(self.items, key=lambda it: it[0]))

    def done(self, best_sum_logprobs, cur_len):
        if len(self.items) < self.num_beams:
            return False
        if self.early_stopping:
            return True
        return self.worst() >= best_sum_logprobs / (cur_len ** self.length_penalty)


declare_formals(MS, "BeamSearch", ("F", "I", "I", "I", "I", "T", "T", "M", "M", "I", "I", "I"),
                ("I", "T", "T"))


@kernel("BeamSearch", since=1, domain=MS, provider="cpu",
        types={"I": _I32, "F": _I32, "M": _I32, "T": frozenset({"float32"})},
        host_inputs=tuple(range(12)), capturable=False)
def BeamSearch(ctx, input_ids, max_length, min_length=None, num_beams=None, num_return_sequences=None,
               length_penalty=None, repetition_penalty=None, vocab_mask=None, prefix_vocab_mask=None,
               attention_mask=None, decoder_input_ids=None, logits_processor=None, *, decoder,
               eos_token_id, pad_token_id, model_type=0, no_repeat_ngram_size=0, early_stopping=0,
               vocab_size=-1, encoder=None, init_decoder=None, decoder_start_token_id=-1,
               decoder_output_cross_qk=0, length_penalty_attr=None):
    """Beam search: keep num_beams candidates per prompt, scored by summed log probabilities;
    returns the best num_return_sequences (padded with pad_token_id) and their scores."""
    if model_type != 0 or encoder is not None:
        raise NotImplementedError("BeamSearch: only decoder-only models (model_type=0) are supported")
    ids = np.asarray(input_ids).astype(np.int32)
    b, s = ids.shape
    max_len = _scalar(max_length, s)
    beams = _scalar(num_beams, 1)
    n_ret = _scalar(num_return_sequences, 1)
    lp = _scalar(length_penalty, 1.0, float)
    if not 1 <= n_ret <= beams:
        raise ValueError(f"BeamSearch: num_return_sequences {n_ret} must be in [1, num_beams={beams}]")
    if max_len <= s:
        raise ValueError(f"BeamSearch: max_length {max_len} must exceed the prompt length {s}")
    process = _Processors(eos=eos_token_id, min_length=_scalar(min_length, 0),
                          repetition_penalty=_scalar(repetition_penalty, 1.0, float),
                          no_repeat_ngram_size=no_repeat_ngram_size, vocab_mask=vocab_mask,
                          prefix_vocab_mask=prefix_vocab_mask, group=beams)
    past_shape, layers = _past_shape(decoder, b * beams)
    mask, positions = _first_feeds(ids, attention_mask, pad_token_id)
    state = {"mask": np.repeat(mask, beams, 0), "positions": np.repeat(positions, beams, 0),
             "pasts": [np.zeros(past_shape, np.float32) for _ in range(layers)], "feed": np.repeat(ids, beams, 0)}

    def step_logits(step, sequences):
        logits, state["pasts"] = _run_decoder(decoder, state["feed"], state["positions"], state["mask"],
                                              state["pasts"])
        return logits[:, -1, :]

    def reorder(rows, tokens):
        state["pasts"] = [p[:, rows] for p in state["pasts"]]
        state["positions"] = state["positions"][rows][:, -1:] + 1
        state["mask"] = np.concatenate([state["mask"][rows], np.ones((b * beams, 1), np.int32)], axis=1)
        state["feed"] = tokens[:, None]

    out, out_scores = _beam_loop(np.repeat(ids, beams, 0), b, beams, max_len, n_ret, process, step_logits,
                                 reorder, eos=eos_token_id, pad=pad_token_id, length_penalty=lp,
                                 early_stopping=early_stopping)
    outs = [out, out_scores]
    return tuple(outs[:ctx.num_outputs]) if ctx.num_outputs > 1 else out


def _beam_loop(sequences, b, beams, max_len, n_ret, process, step_logits, reorder, *, eos, pad,
               length_penalty, early_stopping):
    """onnxruntime's beam search over (b * beams) rows of `sequences`: step_logits(step, sequences)
    gives each row's next-token logits (rows, V); reorder(rows, tokens) moves the caller's state
    (caches, masks) to the chosen beams.  Returns the best n_ret sequences per prompt, padded to
    max_len with pad, and their length-penalized scores."""
    beam_scores = np.full((b, beams), -1e9, np.float32)
    beam_scores[:, 0] = 0
    beam_scores = beam_scores.reshape(-1)
    hyps = [_Hypotheses(beams, length_penalty, early_stopping) for _ in range(b)]
    finished = np.zeros(b, bool)
    step = 0
    while sequences.shape[1] < max_len:
        scores = _log_softmax(step_logits(step, sequences).astype(np.float32))
        scores = process(scores, sequences, step) + beam_scores[:, None]
        vocab = scores.shape[-1]
        flat = scores.reshape(b, beams * vocab)
        top = np.argsort(-flat, axis=1, kind="stable")[:, :2 * beams]
        # onnxruntime 1.32 decides whether prompt i is done from the largest of the candidate
        # scores at [i * beams, i * beams + 2 * beams) of all prompts' top-2*beams lists laid end to
        # end (not prompt i's own list when beams > 1); the same window is used here, so that
        # the same prompts stop early and the outputs agree
        window = np.take_along_axis(flat, top, axis=1).reshape(-1)
        next_scores = np.zeros(b * beams, np.float32)
        next_tokens = np.zeros(b * beams, np.int32)
        next_rows = np.zeros(b * beams, np.int64)
        for i in range(b):
            if finished[i]:
                next_scores[i * beams:(i + 1) * beams] = 0
                next_tokens[i * beams:(i + 1) * beams] = pad
                next_rows[i * beams:(i + 1) * beams] = i * beams
                continue
            k = 0
            for rank, idx in enumerate(top[i]):
                row, tok = i * beams + int(idx) // vocab, int(idx) % vocab
                score = float(flat[i, idx])
                if tok == eos:
                    if rank < beams:
                        hyps[i].add(sequences[row].copy(), score)
                    continue
                next_scores[i * beams + k], next_tokens[i * beams + k], next_rows[i * beams + k] = score, tok, row
                k += 1
                if k == beams:
                    break
            finished[i] = hyps[i].done(float(window[i * beams:i * beams + 2 * beams].max()), sequences.shape[1])
        sequences = np.concatenate([sequences[next_rows], next_tokens[:, None]], axis=1)
        beam_scores = next_scores
        reorder(next_rows, next_tokens)
        step += 1
        if finished.all():
            break
    for i in range(b):  # prompts still open: their live beams join the hypotheses
        if not finished[i]:
            for k in range(beams):
                hyps[i].add(sequences[i * beams + k].copy(), float(beam_scores[i * beams + k]))
    out = np.full((b, n_ret, max_len), pad, np.int32)
    out_scores = np.zeros((b, n_ret), np.float32)
    for i in range(b):
        best = sorted(hyps[i].items, key=lambda it: it[0], reverse=True)[:n_ret]
        for j, (score, tokens) in enumerate(best):
            out[i, j, :len(tokens)] = tokens
            out_scores[i, j] = score
    return out, out_scores


def _graph_io(op, name, graph_fn):
    graph = getattr(getattr(graph_fn, "plan", None), "graph", None)
    if graph is None:
        raise ValueError(f"{op}: the {name} subgraph is missing")
    return [i.name for i in graph.inputs], graph


def _whisper_start(op, features, decoder_input_ids, start_token, batch):
    if decoder_input_ids is not None:
        ids = np.asarray(decoder_input_ids).astype(np.int32)
        if ids.ndim != 2 or ids.shape[0] != batch:
            raise ValueError(f"{op}: decoder_input_ids must be ({batch}, length), got {tuple(ids.shape)}")
        return ids
    if start_token < 0:
        raise ValueError(f"{op}: give decoder_input_ids or the decoder_start_token_id attribute")
    return np.full((batch, 1), start_token, np.int32)


declare_formals(MS, "WhisperBeamSearch", ("F", "I", "I", "I", "I", "T", "T", "M", "M", "I", "I", "I", "I", "I", "T"),
                ("I", "T", "T", "V", "T"))


@kernel("WhisperBeamSearch", since=1, domain=MS, provider="cpu",
        types={"F": frozenset({"float32"}), "I": _I32, "M": _I32, "T": frozenset({"float32"}),
               "V": frozenset({"float32"})},
        host_inputs=tuple(range(15)), capturable=False)
def WhisperBeamSearch(ctx, input_ids, max_length, min_length=None, num_beams=None, num_return_sequences=None,
                      length_penalty=None, repetition_penalty=None, vocab_mask=None, prefix_vocab_mask=None,
                      attention_mask=None, decoder_input_ids=None, logits_processor=None, cross_qk_layer_head=None,
                      extra_decoding_ids=None, temperature=None, *, decoder, encoder=None, eos_token_id,
                      pad_token_id, decoder_start_token_id=-1, model_type=2, no_repeat_ngram_size=0,
                      early_stopping=0, vocab_size=-1, init_decoder=None, decoder_output_cross_qk=0,
                      translate_token_id=-1, transcribe_token_id=-1, start_of_lm_token_id=-1,
                      no_timestamps_token_id=-1, beginning_timestamp_token_id=-1, no_speech_token_id=-1):
    """Beam search over a Whisper-style encoder-decoder: input_ids are the audio features
    (B, feature_size, frames); returns the best num_return_sequences token sequences (starting
    with the decoder's start tokens, padded with pad_token_id) and their scores."""
    op = "WhisperBeamSearch"
    if model_type != 2 or encoder is None:
        raise ValueError(f"{op}: model_type must be 2 with an encoder subgraph, got model_type={model_type}")
    if _scalar(logits_processor, 0):
        raise NotImplementedError(f"{op}: the Whisper timestamp logits processor (logits_processor=1) is not supported")
    if decoder_output_cross_qk or cross_qk_layer_head is not None or extra_decoding_ids is not None:
        raise NotImplementedError(f"{op}: cross_qk outputs and extra_decoding_ids are not supported")
    if any(ctx.output_present[2:]):
        raise NotImplementedError(f"{op}: the scores, cross_qk and non_speech_probs outputs are not supported")
    if attention_mask is not None:
        raise NotImplementedError(f"{op}: an attention_mask input is not supported")
    temp = _scalar(temperature, 1.0, float)
    feats = np.asarray(input_ids, np.float32)
    b = feats.shape[0]
    start = _whisper_start(op, feats, decoder_input_ids, decoder_start_token_id, b)
    max_len = _scalar(max_length, start.shape[1] + 1)
    beams = _scalar(num_beams, 1)
    n_ret = _scalar(num_return_sequences, 1)
    if not 1 <= n_ret <= beams:
        raise ValueError(f"{op}: num_return_sequences {n_ret} must be in [1, num_beams={beams}]")
    if max_len <= start.shape[1]:
        raise ValueError(f"{op}: max_length {max_len} must exceed the decoder's start length {start.shape[1]}")
    dec_inputs, dec_graph = _graph_io(op, "decoder", decoder)
    with_hidden = len(dec_inputs) > 1 and dec_inputs[1] == "encoder_hidden_states"
    ids_dims = dec_graph.inputs[0].type.tensor_type.shape.dim
    one_token = len(ids_dims) == 2 and ids_dims[1].HasField("dim_value") and ids_dims[1].dim_value == 1
    n_self = len(dec_graph.outputs) - 1          # present k/v of the self attentions
    process = _Processors(eos=eos_token_id, min_length=_scalar(min_length, 0),
                          repetition_penalty=_scalar(repetition_penalty, 1.0, float),
                          no_repeat_ngram_size=no_repeat_ngram_size, vocab_mask=vocab_mask,
                          prefix_vocab_mask=prefix_vocab_mask, group=beams)
    enc_out = [np.asarray(o) for o in encoder(np.repeat(feats, beams, 0), np.repeat(start, beams, 0))]
    if len(enc_out) < 6 or (len(enc_out) - 2) % 4:
        raise ValueError(f"{op}: the encoder subgraph must return logits, encoder_hidden_states and 4 caches "
                         f"per layer, got {len(enc_out)} outputs")
    state = {"first": enc_out[0], "hidden": enc_out[1], "caches": enc_out[2:], "tokens": None}

    def step_logits(step, sequences):
        if step == 0:
            logits = state["first"]
        else:
            feed = state["tokens"][:, None] if one_token else sequences
            extra = [state["hidden"]] if with_hidden else []
            outs = decoder(feed.astype(np.int32), *extra, *state["caches"])
            logits = np.asarray(outs[0])
            state["caches"] = [np.asarray(o) for o in outs[1:1 + n_self]] + state["caches"][n_self:]
        last = logits[:, -1, :].astype(np.float32)
        return last / np.float32(temp) if temp != 1.0 else last

    def reorder(rows, tokens):
        state["caches"] = [c[rows] for c in state["caches"]]
        state["hidden"] = state["hidden"][rows]
        state["tokens"] = tokens

    out, out_scores = _beam_loop(np.repeat(start, beams, 0), b, beams, max_len, n_ret, process, step_logits,
                                 reorder, eos=eos_token_id, pad=pad_token_id,
                                 length_penalty=_scalar(length_penalty, 1.0, float), early_stopping=early_stopping)
    if ctx.num_outputs == 1:
        return out
    return (out, out_scores) + (None,) * (ctx.num_outputs - 2)


declare_formals(MS, "NGramRepeatBlock", ("Tid", "T"), ("T",))


@kernel("NGramRepeatBlock", since=1, domain=MS, provider="cpu",
        types={"Tid": frozenset({"int64"}), "T": frozenset({"float32"})}, capturable=False)
def NGramRepeatBlock(ctx, input_ids, scores, *, ngram_size):
    """scores with -inf for each token that would repeat an n-gram already in input_ids."""
    if input_ids.ndim != 2 or scores.ndim != 2 or input_ids.shape[0] != scores.shape[0]:
        raise ValueError(f"NGramRepeatBlock: input_ids (B, S) and scores (B, V) expected, got "
                         f"{tuple(input_ids.shape)} and {tuple(scores.shape)}")
    block = _Processors(eos=0, min_length=0, repetition_penalty=1.0, no_repeat_ngram_size=int(ngram_size),
                        vocab_mask=None, prefix_vocab_mask=None)
    return block(np.array(scores, copy=True), np.asarray(input_ids), 1)


declare_formals(MS, "BifurcationDetector", ("T", "T", "T", "T"), ("T", "T"))


@kernel("BifurcationDetector", since=1, domain=MS, provider="cpu", types={"T": frozenset({"int64"})},
        capturable=False)
def BifurcationDetector(ctx, src_tokens, cur_tokens, prev_suffix_match_idx, pred_tokens=None, *,
                        min_ngram_size=1, max_ngram_size=3):
    """Aggressive decoding: append the predicted tokens up to and including the first one that
    departs from src_tokens (read from prev_suffix_match_idx) to cur_tokens; then find where
    the output's last n-gram (n from min to max) occurs exactly once in src_tokens and return
    the index after it (-1 if no n-gram does: the search stops at the first n with no match)."""
    src = np.asarray(src_tokens).reshape(-1)
    tokens = np.asarray(cur_tokens).reshape(-1)
    prev = int(np.asarray(prev_suffix_match_idx).reshape(-1)[0])
    if pred_tokens is not None:
        pred = np.asarray(pred_tokens).reshape(-1)
        if not 0 <= prev <= src.size or pred.size != src.size + 1 - prev:
            raise ValueError(f"BifurcationDetector: pred_tokens must hold len(src_tokens) + 1 - "
                             f"prev_suffix_match_idx = {src.size + 1 - prev} tokens, got {pred.size}")
        ahead = src[prev:]
        differs = np.nonzero(pred[:ahead.size] != ahead)[0]
        cut = int(differs[0]) if differs.size else ahead.size
        tokens = np.concatenate([tokens, pred[:cut + 1]])
    match = -1
    for n in range(int(min_ngram_size), int(max_ngram_size) + 1):
        if n > tokens.size or n > src.size:
            break
        windows = np.lib.stride_tricks.sliding_window_view(src, n)
        hits = np.nonzero((windows == tokens[-n:]).all(axis=1))[0]
        if hits.size == 0:
            break
        if hits.size == 1:
            match = int(hits[0]) + n
    return tokens.astype(np.int64), np.array(match, dtype=np.int64)
