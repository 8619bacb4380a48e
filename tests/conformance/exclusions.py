"""Cases of the ONNX backend suite that ortgpu does not pass, as data grouped by cause.

Patterns are anchored regexes over the case name (with its _cpu/_cuda suffix).
SKIP: cases not run at all (they cannot pass here for a reason outside ortgpu).
XFAIL: known gaps; they run, and a fix shows up as an unexpected pass (XPASS).
"""

SKIP: dict[str, list[tuple[str, str]]] = {
    "random outputs": [  # a run can match the stored draw by chance: an unexpected pass is noise
        (r"^test_bernoulli", "the stored outputs come from NumPy's unseeded global generator "
                             "(even for the seeded case); shape and dtype are right"),
        (r"^test_training_dropout(_default)?(_mask)?_c", "random dropout mask with ratio > 0 cannot "
                                                         "reproduce the stored draw"),
    ],
}

XFAIL: dict[str, list[tuple[str, str]]] = {
    "not implemented": [
        (r"^test_gradient_of_add", "ai.onnx.preview.training Gradient needs automatic differentiation "
                                   "of the graph; not implemented"),
    ],
    "precision": [
        (r"^test_attention_4d_causal_fp16_expanded_c", "our float16 MatMul accumulates in float32; the "
                                                       "stored outputs accumulate in float16 (2 of 192 "
                                                       "values differ by one float16 ulp)"),
    ],
    "suite runner": [
        (r"^test_loop16_seq_none_c", "onnx's runner calls len() on a 0-d array inside a sequence output "
                                     "(our output equals the expected one)"),
    ],
}


def patterns(table: dict[str, list[tuple[str, str]]]) -> list[str]:
    return [p for rows in table.values() for p, _ in rows]
