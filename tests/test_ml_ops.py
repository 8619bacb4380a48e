"""ai.onnx.ml single-node models against onnxruntime, on the encodings converters rarely write:
map inputs (CastMap, DictVectorizer), one-row binary linear/SVM classifiers, liblinear SVMs,
two-class tree ensembles with and without base values, and each post_transform."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import ortgpu

ML = "ai.onnx.ml"
CPU = ["CPUExecutionProvider"]


def _model(node, inputs, outputs):
    g = helper.make_graph([node], "g", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 3)],
                             ir_version=10).SerializeToString()


def _compare(model, feeds):
    want = onnxruntime.InferenceSession(model, providers=CPU).run(None, feeds)
    got = ortgpu.InferenceSession(model, providers=CPU).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        else:
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    return got


def _map_input(key, value):
    return helper.make_value_info("X", helper.make_map_type_proto(key, helper.make_tensor_type_proto(value, [])))


@pytest.mark.parametrize("cast_to,out_type", [("TO_FLOAT", TensorProto.FLOAT), ("TO_INT64", TensorProto.INT64),
                                              ("TO_STRING", TensorProto.STRING)])
@pytest.mark.parametrize("form", ["DENSE", "SPARSE"])
def test_cast_map(cast_to, out_type, form):
    # (onnxruntime's Python binding cannot feed a map of int64 to strings, so only floats here)
    feed = {3: 2.5, 0: 7.0, 5: -1.25}
    node = helper.make_node("CastMap", ["X"], ["Y"], domain=ML, cast_to=cast_to, map_form=form, max_map=7)
    model = _model(node, [_map_input(TensorProto.INT64, TensorProto.FLOAT)],
                   [helper.make_tensor_value_info("Y", out_type, None)])
    _compare(model, {"X": feed})


@pytest.mark.parametrize("value_type", [TensorProto.FLOAT])  # the only map onnxruntime's binding feeds
def test_dict_vectorizer_int64_keys(value_type):
    node = helper.make_node("DictVectorizer", ["X"], ["Y"], domain=ML, int64_vocabulary=[4, 1, 9, 2])
    model = _model(node, [_map_input(TensorProto.INT64, value_type)],
                   [helper.make_tensor_value_info("Y", value_type, None)])
    _compare(model, {"X": {1: 3.0, 2: 5.0, 7: 1.0}})


def _labels(kind, n):
    return {"classlabels_strings": [f"c{i}" for i in range(n)]} if kind == "s" else \
        {"classlabels_ints": [10 + 3 * i for i in range(n)]}


def _classifier(op, attrs, features, label_type, score_cols=None):
    node = helper.make_node(op, ["X"], ["Y", "Z"], domain=ML, **attrs)
    return _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, features])],
                  [helper.make_tensor_value_info("Y", label_type, None),
                   helper.make_tensor_value_info("Z", TensorProto.FLOAT, None)])


POSTS = ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]


@pytest.mark.parametrize("post", POSTS)
@pytest.mark.parametrize("classes,n_labels", [(1, 2), (3, 3)])
@pytest.mark.parametrize("kind", ["s", "i"])
def test_linear_classifier(post, classes, n_labels, kind):
    rng = np.random.default_rng(classes * 10 + n_labels)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    if post == "PROBIT":
        x *= 0.05  # keep the scores inside (0, 1), where PROBIT is defined
    labels = _labels(kind, n_labels)
    key = "classlabels_strings" if kind == "s" else "classlabels_ints"
    attrs = dict(coefficients=rng.normal(size=classes * 4).tolist(), intercepts=rng.normal(size=classes).tolist(),
                 post_transform=post, **{key: labels[key]})
    if post == "PROBIT":
        attrs["coefficients"] = (np.abs(np.array(attrs["coefficients"])) * 0.1).tolist()
        attrs["intercepts"] = [0.3] * classes
    model = _classifier("LinearClassifier", attrs, 4, TensorProto.STRING if kind == "s" else TensorProto.INT64)
    if classes == 1 and n_labels == 2 and post == "PROBIT":
        pytest.skip("onnxruntime leaves half of Z uninitialized here")
    _compare(model, {"X": x})


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("positive", [False, True])
def test_svm_classifier_liblinear(post, n_classes, positive):
    rng = np.random.default_rng(n_classes)
    coef = rng.normal(size=n_classes * 3)
    if positive:
        coef = np.abs(coef) * 0.2
    attrs = dict(coefficients=coef.tolist(), rho=[0.1], post_transform=post, kernel_type="LINEAR",
                 kernel_params=[0.5, 0.0, 1.0],
                 classlabels_ints=list(range(n_classes)))
    model = _classifier("SVMClassifier", attrs, 3, TensorProto.INT64)
    _compare(model, {"X": rng.normal(size=(12, 3)).astype(np.float32)})


@pytest.mark.parametrize("kernel", ["LINEAR", "POLY", "RBF", "SIGMOID"])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_svm_classifier_svc_without_probabilities(kernel, post, n_classes):
    rng = np.random.default_rng(7)
    per_class = [2, 1, 3, 2][:n_classes]
    nv = sum(per_class)
    attrs = dict(coefficients=rng.normal(size=(n_classes - 1) * nv).tolist(),
                 rho=rng.normal(size=n_classes * (n_classes - 1) // 2).tolist(),
                 support_vectors=rng.normal(size=nv * 3).tolist(), vectors_per_class=per_class,
                 kernel_type=kernel, kernel_params=[0.3, 0.5, 3.0], post_transform=post,
                 classlabels_strings=[f"k{i}" for i in range(n_classes)])
    model = _classifier("SVMClassifier", attrs, 3, TensorProto.STRING)
    _compare(model, {"X": rng.normal(size=(10, 3)).astype(np.float32)})


@pytest.mark.parametrize("kernel", ["LINEAR", "POLY", "RBF", "SIGMOID"])
@pytest.mark.parametrize("one_class", [0, 1])
def test_svm_regressor(kernel, one_class):
    rng = np.random.default_rng(3)
    node = helper.make_node("SVMRegressor", ["X"], ["Y"], domain=ML, coefficients=rng.normal(size=5).tolist(),
                            rho=[0.2], support_vectors=rng.normal(size=15).tolist(), n_supports=5,
                            kernel_type=kernel, kernel_params=[0.4, 0.1, 2.0], one_class=one_class)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    _compare(model, {"X": rng.normal(size=(8, 3)).astype(np.float32)})


def _stump_forest(class_ids, weights):
    """Two depth-1 trees over feature 0 and 1; every leaf votes (class_ids[k], weights[k]) per tree."""
    nodes = dict(nodes_treeids=[0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 0, 1, 2],
                 nodes_featureids=[0, 0, 0, 1, 0, 0], nodes_values=[0.0, 0, 0, 0.3, 0, 0],
                 nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"] * 2, nodes_truenodeids=[1, 0, 0, 1, 0, 0],
                 nodes_falsenodeids=[2, 0, 0, 2, 0, 0])
    tree, node, cls, w = [], [], [], []
    for t in (0, 1):
        for leaf, scale in ((1, 1.0), (2, 0.4)):
            for c, wt in zip(class_ids, weights):
                flip = -1 if wt < 0 and leaf == 2 else 1  # mixed signs when the weights are negative
                tree.append(t), node.append(leaf), cls.append(c), w.append(wt * scale * flip * (1 + t))
    return dict(nodes, class_treeids=tree, class_nodeids=node, class_ids=cls, class_weights=w)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
@pytest.mark.parametrize("votes", [([0], [0.3]), ([1], [0.2]), ([0], [-0.7]), ([0, 1], [0.25, 0.35])])
@pytest.mark.parametrize("base", [None, [0.1], [0.1, -0.2]])
@pytest.mark.parametrize("kind", ["s", "i"])
def test_tree_ensemble_classifier_two_classes(post, votes, base, kind):
    attrs = _stump_forest(*votes)
    attrs.update(post_transform=post, **_labels(kind, 2))
    if kind == "i":
        attrs["classlabels_int64s"] = attrs.pop("classlabels_ints")
    if base is not None:
        attrs["base_values"] = base
    model = _classifier("TreeEnsembleClassifier", attrs, 2, TensorProto.STRING if kind == "s" else TensorProto.INT64)
    x = np.random.default_rng(1).normal(size=(16, 2)).astype(np.float32)
    _compare(model, {"X": x})


@pytest.mark.parametrize("post", ["NONE", "SOFTMAX", "LOGISTIC"])
@pytest.mark.parametrize("base", [None, [0.1, 0.0, -0.3]])
def test_tree_ensemble_classifier_three_classes(post, base):
    attrs = _stump_forest([0, 2], [0.4, 0.6])
    attrs.update(post_transform=post, classlabels_int64s=[5, 6, 7])
    if base is not None:
        attrs["base_values"] = base
    model = _classifier("TreeEnsembleClassifier", attrs, 2, TensorProto.INT64)
    _compare(model, {"X": np.random.default_rng(2).normal(size=(16, 2)).astype(np.float32)})


def test_svm_regressor_refuses_wrong_feature_count():
    from ortgpu.errors import InvalidArgument
    node = helper.make_node("SVMRegressor", ["X"], ["Y"], domain=ML, coefficients=[1.0, 2.0], rho=[0.0],
                            support_vectors=[0.0] * 6, n_supports=2, kernel_type="RBF", kernel_params=[0.1, 0, 1])
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None])],
                   [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    sess = ortgpu.InferenceSession(model, providers=CPU)
    with pytest.raises(InvalidArgument, match="X has 4 features, the support vectors 3"):
        sess.run(None, {"X": np.zeros((2, 4), np.float32)})


def test_dict_vectorizer_refuses_a_tensor():
    from ortgpu.errors import InvalidArgument
    from ortgpu.providers.kernels.ml_maps import DictVectorizer
    with pytest.raises(InvalidArgument, match="input X must be a map"):
        DictVectorizer(None, np.zeros(3), string_vocabulary=["a"])
