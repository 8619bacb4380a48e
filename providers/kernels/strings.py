"""String ops (host only): string tensors are NumPy object arrays of Python ``str``."""
import functools
import re

import numpy as np

from ortgpu.providers.dtype_sets import BOOL, INDEX, STRING
from ortgpu.providers.registry import DATA_DEPENDENT, kernel


def _strings(shape, values):
    """An object array of `shape` holding `values` (an iterable of str)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


@kernel("StringConcat", since=20, provider="cpu", types={"T": STRING})
def StringConcat(ctx, X, Y):
    """Elementwise X + Y with NumPy broadcasting."""
    X = np.asarray(X, dtype=object)
    Y = np.asarray(Y, dtype=object)
    return np.asarray(np.add(X, Y, dtype=object), dtype=object)


@kernel("StringNormalizer", since=10, provider="cpu", types={})
def StringNormalizer(ctx, X, *, case_change_action="NONE", is_case_sensitive=0, locale="",
                     stopwords=()):
    """Drop stopwords, then change case; an all-dropped [C] / [1, C] input gives [""] / [[""]]."""
    if X.ndim == 2 and X.shape[0] != 1 or X.ndim not in (1, 2):
        raise ValueError(f"StringNormalizer accepts [C] or [1, C] inputs, got shape {X.shape}")
    if case_change_action not in ("NONE", "LOWER", "UPPER"):
        raise ValueError(f"case_change_action must be NONE, LOWER or UPPER, got {case_change_action!r}")
    words = list(X.reshape(-1))
    if stopwords:
        if is_case_sensitive:
            stop = set(stopwords)
            words = [w for w in words if w not in stop]
        else:
            stop = {s.casefold() for s in stopwords}
            words = [w for w in words if w.casefold() not in stop]
    if case_change_action == "LOWER":
        words = [w.lower() for w in words]
    elif case_change_action == "UPPER":
        words = [w.upper() for w in words]
    if not words:
        words = [""]
    return _strings((len(words),) if X.ndim == 1 else (1, len(words)), words)


_SPACES = re.compile(" +")


@kernel("StringSplit", since=20, provider="cpu",
        types={"T1": STRING, "T2": STRING, "T3": frozenset({"int64"})}, capturable=DATA_DEPENDENT)
def StringSplit(ctx, X, *, delimiter=None, maxsplit=None):
    """Split each string; empty/absent delimiter splits on whitespace runs. Pads with "" to the longest."""
    sep = delimiter or None
    limit = -1 if maxsplit is None else maxsplit
    if sep is None:  # runs of ' ' separate; trimmed at both ends (onnxruntime: only ' ' counts)
        parts = []
        for s in X.reshape(-1):
            s = s.strip(" ")
            parts.append([] if not s else [s] if limit == 0 else _SPACES.split(s, max(limit, 0)))
    else:  # "" has no substrings
        parts = [s.split(sep, limit) if s else [] for s in X.reshape(-1)]
    counts = np.array([len(p) for p in parts], dtype=np.int64).reshape(X.shape)
    width = int(counts.max()) if counts.size else 0
    Y = np.full((len(parts), width), "", dtype=object)
    for i, p in enumerate(parts):
        Y[i, :len(p)] = p
    return Y.reshape(X.shape + (width,)), counts


class PatternError(ValueError):
    """A RegexFullMatch pattern that RE2 refuses (backreferences, lookaround, bad syntax)."""


@functools.lru_cache(maxsize=64)
def compile_pattern(pattern: str):
    """`pattern` compiled by RE2, as onnxruntime compiles it: matching takes time linear in the
    text (no backtracking, so no pattern can hang a run); PatternError where RE2 refuses it."""
    try:
        import re2  # noqa: PLC0415 - google-re2, a dependency of ortgpu
    except ImportError:
        raise NotImplementedError("RegexFullMatch needs the google-re2 package (pip install google-re2)") \
            from None
    options = re2.Options()
    options.log_errors = False  # the error is raised, not also printed
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError:  # bytes of the attribute that are not UTF-8 (kept as surrogates)
        raise PatternError(f"RegexFullMatch: pattern {pattern!r} is not valid UTF-8") from None
    try:
        return re2.compile(pattern, options)
    except re2.error as e:
        why = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise PatternError(f"RegexFullMatch: RE2 cannot compile pattern {pattern!r}: {why}") from None


@kernel("RegexFullMatch", since=20, provider="cpu", types={"T1": STRING, "T2": BOOL})
def RegexFullMatch(ctx, X, *, pattern):
    """Whether each string fully matches `pattern`, with RE2 (onnxruntime's engine and syntax)."""
    rx = compile_pattern(pattern)
    flat = [rx.fullmatch(s) is not None for s in X.reshape(-1)]
    return np.array(flat, dtype=bool).reshape(X.shape)


def _ngram_pool(pool, ngram_counts):
    """Split the flat pool into {n: [K_n, n] array of n-grams} plus each group's first n-gram ordinal."""
    groups = {}
    ordinal = 0
    starts = list(ngram_counts) + [len(pool)]
    for i in range(len(ngram_counts)):
        n = i + 1
        lo, hi = starts[i], starts[i + 1]
        if (hi - lo) % n:
            raise ValueError(f"TfIdfVectorizer: the pool's {n}-gram block [{lo}, {hi}) "
                             f"is not a multiple of {n}")
        k = (hi - lo) // n
        if k:
            groups[n] = (np.asarray(pool[lo:hi]).reshape(k, n), ordinal)
        ordinal += k
    return groups


@kernel("TfIdfVectorizer", since=9, provider="cpu",
        types={"T": INDEX | STRING, "T1": frozenset({"float32"})})
def TfIdfVectorizer(ctx, X, *, max_gram_length, max_skip_count, min_gram_length, mode, ngram_counts,
                    ngram_indexes, pool_int64s=None, pool_strings=None, weights=None):
    """Count pool n-grams (n in [min, max], any skip up to max_skip_count; unigrams once) per row."""
    if (pool_int64s is None) == (pool_strings is None):
        raise ValueError("TfIdfVectorizer needs exactly one of pool_int64s and pool_strings")
    if mode not in ("TF", "IDF", "TFIDF"):
        raise ValueError(f"TfIdfVectorizer mode must be TF, IDF or TFIDF, got {mode!r}")
    if X.ndim not in (1, 2):
        raise ValueError(f"TfIdfVectorizer accepts 1-D or 2-D input, got shape {X.shape}")
    rows = X.reshape(1, -1) if X.ndim == 1 else X
    if pool_strings is not None:
        # Map tokens to vocabulary ids so that the matching below works on integers.
        vocab = {s: i for i, s in enumerate(dict.fromkeys(pool_strings))}
        pool = np.array([vocab[s] for s in pool_strings], dtype=np.int64)
        rows = np.array([vocab.get(s, -1) for s in rows.reshape(-1)], dtype=np.int64).reshape(rows.shape)
    else:
        pool = np.asarray(pool_int64s, dtype=np.int64)
        rows = rows.astype(np.int64)
    n_rows, width = rows.shape
    out_size = max(ngram_indexes) + 1 if len(ngram_indexes) else 0
    counts = np.zeros((n_rows, out_size), dtype=np.float32)
    ngram_indexes = np.asarray(ngram_indexes, dtype=np.int64)
    for n, (grams, first) in _ngram_pool(pool, ngram_counts).items():
        if not min_gram_length <= n <= max_gram_length:
            continue
        hits = np.zeros((n_rows, len(grams)), dtype=np.int64)
        for skip in range(max_skip_count + 1 if n > 1 else 1):
            step = skip + 1
            span = (n - 1) * step
            if span >= width:
                break
            # windows[r, s, j] = rows[r, s + j * step]
            idx = np.arange(width - span)[:, None] + np.arange(n)[None, :] * step
            windows = rows[:, idx]
            match = (windows[:, :, None, :] == grams[None, None, :, :]).all(axis=-1)
            hits += match.sum(axis=1)
        np.add.at(counts, (slice(None), ngram_indexes[first:first + len(grams)]), hits.astype(np.float32))
    if mode != "TF":
        # weights[i] scales the i-th pool n-gram, which lands at output ngram_indexes[i].
        scale = np.ones(out_size, dtype=np.float32)
        if weights:
            if len(weights) != len(ngram_indexes):
                raise ValueError(f"TfIdfVectorizer: {len(weights)} weights for {len(ngram_indexes)} n-grams")
            scale[ngram_indexes] = np.asarray(weights, dtype=np.float32)
        if mode == "IDF":
            counts = np.minimum(counts, 1)
        counts = counts * scale
    return counts.reshape(out_size) if X.ndim == 1 else counts
