"""Bad inputs to com.microsoft kernels fail with an onnxruntime-style error that names the
op, the input and what was expected, and an unknown com.microsoft op still fails to load."""
import numpy as np
import pytest

import ortgpu
from support.harness import F32, I32, Case, node
from ortgpu.errors import Fail, RuntimeException

CPU = ["CPUExecutionProvider"]


def _run(case):
    return ortgpu.InferenceSession(case.model().SerializeToString(), providers=CPU).run(None, case.feeds)


def test_embed_layer_norm_refuses_ids_outside_the_vocabulary():
    case = Case(node("EmbedLayerNormalization", ["ids", "", "word", "pos", "", "gamma", "beta"], ["Y", "mask_index"]),
                {"ids": np.array([[1, 7]], I32)},
                {"word": np.ones((5, 4), F32), "pos": np.ones((2, 4), F32), "gamma": np.ones(4, F32),
                 "beta": np.zeros(4, F32)},
                out_types={"Y": 1, "mask_index": 6})
    with pytest.raises(RuntimeException, match=r"EmbedLayerNormalization: input 'input_ids' holds indices "
                                               r"outside \[0, 5\), e.g. 7"):
        _run(case)


def test_attention_refuses_weights_that_do_not_fit_the_heads():
    case = Case(node("Attention", ["x", "w"], ["Y"], num_heads=3),
                {"x": np.ones((1, 2, 4), F32)}, {"w": np.ones((4, 12), F32)})
    with pytest.raises(RuntimeException, match=r"Attention: qkv hidden sizes \[4, 4, 4\] do not fit weights "
                                               r"\(4, 12\) and num_heads=3"):
        _run(case)


def test_group_query_attention_refuses_lengths_shorter_than_the_new_tokens():
    b, s, d = 1, 3, 16
    case = Case(node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "seqlens_k", "total"], ["Y", "pk_o", "pv_o"],
                     num_heads=1, kv_num_heads=1),
                {"q": np.ones((b, s, d), F32), "k": np.ones((b, s, d), F32), "v": np.ones((b, s, d), F32),
                 "pk": np.ones((b, 1, 8, d), F32), "pv": np.ones((b, 1, 8, d), F32),
                 "seqlens_k": np.array([0], I32), "total": np.array(4, I32)})
    with pytest.raises(RuntimeException, match=r"GroupQueryAttention: seqlens_k \+ 1 \(\[1\]\) is shorter than "
                                               r"the 3 new tokens"):
        _run(case)


def test_skip_layer_norm_names_the_parameter_of_the_wrong_length():
    case = Case(node("SkipLayerNormalization", ["x", "skip", "gamma"], ["Y"]),
                {"x": np.ones((1, 2, 4), F32), "skip": np.ones((1, 2, 4), F32)}, {"gamma": np.ones(3, F32)})
    with pytest.raises(RuntimeException, match=r"SkipLayerNormalization: input 'gamma' must have shape \(4,\) "
                                               r"\(the hidden size\), got \(3,\)"):
        _run(case)


def test_an_unknown_com_microsoft_op_still_fails_to_load():
    case = Case(node("NoSuchContribOp", ["x"], ["Y"]), {"x": np.ones(2, F32)})
    with pytest.raises(Fail, match="com.microsoft:NoSuchContribOp.* is not a registered function/op"):
        _run(case)
