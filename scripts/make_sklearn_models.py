"""Build the scikit-learn test models of tests/data/sklearn/ (needs scikit-learn and skl2onnx).

Each estimator is fitted on seeded synthetic data, converted by skl2onnx, and saved as NAME.onnx
beside NAME.npz, which holds the test inputs (``in:<input name>``) and scikit-learn's own answers
(``label``, ``proba``, ``value``); a map input (DictVectorizer) is stored as its keys and values
(``mapkeys:<name>``, ``mapvalues:<name>``).  The default tests then need neither library.

    python scripts/make_sklearn_models.py [out_dir]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import (DictionaryType, FloatTensorType, Int64TensorType,
                                        StringTensorType)
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.feature_extraction import DictVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import LabelEncoder, Normalizer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC

OPSET = {"": 17, "ai.onnx.ml": 3}
N_TEST = 24


def data(seed, n=160, features=5, classes=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (classes, features))
    y = rng.integers(0, classes, n)
    x = (centers[y] + rng.normal(0, 1.2, (n, features))).astype(np.float32)
    return x, y


def save(out, name, onx, feeds, **answers):
    (out / f"{name}.onnx").write_bytes(onx.SerializeToString())
    arrays = {}
    for k, v in feeds.items():
        if isinstance(v, dict):
            arrays[f"mapkeys:{k}"] = np.asarray(list(v.keys()))
            arrays[f"mapvalues:{k}"] = np.asarray(list(v.values()), dtype=np.float32)
        else:
            arrays[f"in:{k}"] = v
    arrays.update({k: np.asarray(v) for k, v in answers.items()})
    np.savez_compressed(out / f"{name}.npz", **arrays)


def convert(model, inputs, zipmap=True):
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    options = None if zipmap or not hasattr(final, "predict_proba") else {id(final): {"zipmap": False}}
    return convert_sklearn(model, initial_types=inputs, target_opset=OPSET, options=options)


def classifier(out, name, model, seed, classes=3, zipmap=False, labels=None):
    x, y = data(seed, classes=classes)
    if labels is not None:
        y = np.asarray(labels)[y]
    model.fit(x[N_TEST:], y[N_TEST:])
    onx = convert(model, [("X", FloatTensorType([None, x.shape[1]]))], zipmap)
    answers = {"label": model.predict(x[:N_TEST])}
    if hasattr(model, "predict_proba"):
        answers["proba"] = model.predict_proba(x[:N_TEST]).astype(np.float32)
    save(out, name, onx, {"X": x[:N_TEST]}, **answers)


def regressor(out, name, model, seed):
    x, _ = data(seed)
    rng = np.random.default_rng(seed + 100)
    y = x @ rng.normal(size=x.shape[1]) + np.sin(x[:, 0]) + rng.normal(0, 0.1, len(x))
    model.fit(x[N_TEST:], y[N_TEST:])
    onx = convert(model, [("X", FloatTensorType([None, x.shape[1]]))])
    save(out, name, onx, {"X": x[:N_TEST]}, value=model.predict(x[:N_TEST]).astype(np.float32))


def mixed_pipeline(out):
    """Scaler + imputer on numbers, one-hot on strings, then a logistic regression."""
    rng = np.random.default_rng(7)
    n = 160
    num = rng.normal(size=(n, 3)).astype(np.float32)
    cat = rng.choice(["red", "green", "blue"], size=(n, 1)).astype(object)
    y = ((num[:, 0] + (cat[:, 0] == "red") * 1.5 + rng.normal(0, 0.5, n)) > 0.5).astype(np.int64)
    num[rng.random(num.shape) < 0.1] = np.nan
    import pandas as pd  # noqa: PLC0415  (ColumnTransformer over two typed columns)
    frame = pd.DataFrame({"a": num[:, 0], "b": num[:, 1], "c": num[:, 2], "colour": cat[:, 0]})
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), ["a", "b", "c"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"])])
    model = Pipeline([("pre", pre), ("clf", LogisticRegression())])
    model.fit(frame[N_TEST:], y[N_TEST:])
    inputs = [("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 1])),
              ("c", FloatTensorType([None, 1])), ("colour", StringTensorType([None, 1]))]
    onx = convert_sklearn(model, initial_types=inputs, target_opset=OPSET)
    test = frame[:N_TEST]
    feeds = {k: test[[k]].to_numpy().astype(np.float32) for k in "abc"}
    feeds["colour"] = test[["colour"]].to_numpy().astype(object)
    save(out, "pipeline_scaler_onehot_imputer", onx, feeds, label=model.predict(test),
         proba=model.predict_proba(test).astype(np.float32))


def dict_vectorizer(out):
    rng = np.random.default_rng(11)
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    rows = [{w: float(rng.integers(1, 5)) for w in rng.choice(words, size=3, replace=False)}
            for _ in range(40)]
    model = make_pipeline(DictVectorizer(sparse=False), LinearRegression())
    y = [r.get("alpha", 0) * 2 - r.get("gamma", 0) + 1 for r in rows]
    model.fit(rows, y)
    onx = convert(model, [("X", DictionaryType(StringTensorType([1]), FloatTensorType([1])))])
    probe = {"alpha": 3.0, "delta": 1.0, "zeta": 4.0}
    save(out, "dictvectorizer_linear", onx, {"X": probe},
         value=model.predict([probe]).astype(np.float32))


def label_encoder(out):
    names = np.array(["cat", "dog", "emu", "yak"], dtype=object)
    model = LabelEncoder().fit(names)
    onx = convert(model, [("X", StringTensorType([None]))])
    probe = np.array(["yak", "cat", "emu", "dog", "cat"], dtype=object)
    save(out, "label_encoder", onx, {"X": probe}, label=model.transform(probe))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    classifier(out, "logreg_binary", LogisticRegression(), 1, classes=2)
    classifier(out, "logreg_multi_zipmap", LogisticRegression(max_iter=500), 2, zipmap=True)
    classifier(out, "logreg_strings", LogisticRegression(max_iter=500), 3,
               labels=["ant", "bee", "cow"])
    classifier(out, "linear_svc", LinearSVC(), 4)
    classifier(out, "rf_classifier", RandomForestClassifier(n_estimators=6, max_depth=4,
                                                            random_state=0), 5)
    classifier(out, "rf_binary", RandomForestClassifier(n_estimators=5, max_depth=3,
                                                        random_state=0), 6, classes=2)
    classifier(out, "gb_classifier", GradientBoostingClassifier(n_estimators=8, max_depth=2,
                                                                random_state=0), 8)
    classifier(out, "gb_binary", GradientBoostingClassifier(n_estimators=8, max_depth=2,
                                                            random_state=0), 9, classes=2)
    classifier(out, "svc_rbf_proba", SVC(probability=True, random_state=0), 10)
    classifier(out, "svc_binary_proba", SVC(probability=True, kernel="poly", degree=2,
                                            random_state=0), 12, classes=2)
    classifier(out, "svc_linear_noproba", SVC(kernel="linear"), 13)
    regressor(out, "rf_regressor", RandomForestRegressor(n_estimators=6, max_depth=4, random_state=0), 14)
    regressor(out, "gb_regressor", GradientBoostingRegressor(n_estimators=10, max_depth=3,
                                                             random_state=0), 15)
    regressor(out, "svr_rbf", SVR(C=3.0), 16)
    regressor(out, "linear_regression", make_pipeline(Normalizer(), LinearRegression()), 17)
    mixed_pipeline(out)
    dict_vectorizer(out)
    label_encoder(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else
         Path(__file__).resolve().parent.parent / "tests" / "data" / "sklearn")
