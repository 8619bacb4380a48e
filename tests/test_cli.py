"""The command line: `ortgpu run` on given and generated inputs (--shape), `ortgpu demo` (PP-OCRv4
reading the text it draws), `ortgpu convert` summaries, `--version`, `python -m ortgpu`."""
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, save

from ortgpu.cli import main


def _model(path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_run_with_inputs_file(tmp_path, capsys):
    path = str(tmp_path / "m.onnx")
    _model(path)
    np.savez(tmp_path / "in.npz", x=np.array([[-1, 2, -3], [4, -5, 6]], np.float32))
    assert main(["run", path, "--inputs", str(tmp_path / "in.npz"), "--runs", "2", "--compare"]) == 0
    out = capsys.readouterr().out
    assert "y: shape=[2, 3] dtype=float32 min=0 max=6" in out
    assert "latency: median" in out and "max abs difference 0" in out


def test_run_with_generated_inputs_and_bad_provider(tmp_path, capsys):
    path = str(tmp_path / "m.onnx")
    _model(path)
    assert main(["run", path, "--runs", "1"]) == 0
    assert "input x: tensor(float) [1, 3]" in capsys.readouterr().out
    assert main(["run", path, "--providers", "NoSuchExecutionProvider"]) == 1
    assert "Unknown Provider Type" in capsys.readouterr().err


def test_run_missing_model_is_a_clean_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "absent.onnx")]) == 1
    assert "NoSuchFile" in capsys.readouterr().err


def test_demo_reads_the_text_it_draws_and_matches_onnxruntime(capsys):
    from ortgpu.demo import TEXT
    assert main(["demo", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "text read:  " + " | ".join(TEXT) in out and "read correctly: yes" in out
    assert "placement: det:" in out and "nodes on CPUExecutionProvider" in out
    assert "latency: det" in out
    pytest.importorskip("onnxruntime")
    line = next(x for x in out.splitlines() if x.startswith("onnxruntime "))
    det = float(line.split("difference det ")[1].split(",")[0])
    rec = float(line.split(", rec ")[1].split(";")[0])
    assert det < 1e-3 and rec < 1e-4 and line.endswith("text identical")


def test_demo_text_is_read_the_same_on_the_device_double():
    """The demo pipeline with the double as a CUDA stand-in: every node placed there, same text."""
    import ortgpu
    from support.device_double import providers
    from ortgpu.demo import TEXT, demo_image, model_path, read_text
    det = ortgpu.InferenceSession(model_path("det"), providers=providers())
    rec = ortgpu.InferenceSession(model_path("rec"), providers=providers())
    assert read_text(det, rec, demo_image())[0] == TEXT
    on_device = [p for _, op, p in det.get_provider_assignment() if not op.startswith("Memcpy")]
    assert on_device.count("FakeDeviceExecutionProvider") > 0.9 * len(on_device)


def test_demo_models_ship_with_licence_and_origin():
    import hashlib
    from ortgpu.demo import MODELS, model_path
    folder = os.path.dirname(model_path("det"))
    readme = open(os.path.join(folder, "README.md")).read()
    assert "Apache License" in open(os.path.join(folder, "LICENSE")).read()
    for name, filename in MODELS.items():
        digest = hashlib.sha256(open(model_path(name), "rb").read()).hexdigest()
        assert filename in readme and digest in readme  # the README says where each file came from
    assert sum(os.path.getsize(model_path(n)) for n in MODELS) < 20_000_000


def test_version_and_python_dash_m(capsys):
    import ortgpu
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("ortgpu ")
    res = subprocess.run([sys.executable, "-m", "ortgpu", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and ortgpu.__version__ in res.stdout


def _image_model(path):
    """Conv over an NCHW image with free batch, height and width."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 3, 3], np.ones(54, np.float32).tolist())
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_run_shape_option_and_sensible_free_dims(tmp_path, capsys):
    path = str(tmp_path / "img.onnx")
    _image_model(path)
    assert main(["run", path, "--runs", "1"]) == 0
    assert "input x: tensor(float) [1, 3, 224, 224]" in capsys.readouterr().out  # not 1x3x1x1
    assert main(["run", path, "--runs", "1", "--shape", "x=2x3x64x96"]) == 0
    out = capsys.readouterr().out
    assert "input x: tensor(float) [2, 3, 64, 96]" in out and "y: shape=[2, 2, 64, 96]" in out


@pytest.mark.parametrize("spec, message", [
    ("z=1x3x8x8", "the model has no input 'z'; its inputs are ['x']"),
    ("x=1x3x8", "input 'x' has rank 4 (nx3xhxw), not 3"),
    ("x=1x4x8x8", "dimension 1 of input 'x' is fixed at 3"),
    ("x=1xthreex8x8", "dimensions must be integers"),
    ("1x3x8x8", "expected NAME=DIMS"),
])
def test_run_shape_errors_name_the_problem(tmp_path, capsys, spec, message):
    path = str(tmp_path / "img.onnx")
    _image_model(path)
    assert main(["run", path, "--shape", spec]) == 1
    err = capsys.readouterr().err
    assert "ValueError" in err and message in err


def test_npz_with_a_wrong_name_is_a_clear_error(tmp_path, capsys):
    path = str(tmp_path / "m.onnx")
    _model(path)
    np.savez(tmp_path / "in.npz", X=np.ones((1, 3), np.float32))
    assert main(["run", path, "--inputs", str(tmp_path / "in.npz")]) == 1
    err = capsys.readouterr().err
    assert "array(s) ['X'] name no input of the model; its inputs are ['x']" in err
    assert "KeyError" not in err


def test_generated_integer_inputs_are_in_range():
    """BERT-like inputs: token ids 0/1, token types 0, mask 1; an embedding Gather accepts them."""
    import ortgpu
    from ortgpu.sample_inputs import make_inputs
    emb = helper.make_tensor("emb", TensorProto.FLOAT, [2, 4], np.arange(8, dtype=np.float32).tolist())
    types = helper.make_tensor("types", TensorProto.FLOAT, [1, 4], np.ones(4, np.float32).tolist())
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["a"]),
             helper.make_node("Gather", ["types", "token_type_ids"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["mu"]),
             helper.make_node("Mul", ["c", "mu"], ["y"])]
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
            for n in ("input_ids", "token_type_ids", "attention_mask")]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    g = helper.make_graph(nodes, "g", ints, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [emb, types, axes])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = make_inputs(sess)
    assert feed["input_ids"].shape == (1, 16) and set(np.unique(feed["input_ids"])) <= {0, 1}
    assert not feed["token_type_ids"].any() and feed["attention_mask"].all()
    sess.run(None, feed)  # in range for the embeddings


def test_convert_bf16_summarises_kept_nodes(tmp_path, capsys):
    path, out = str(tmp_path / "m.onnx"), str(tmp_path / "m_bf16.onnx")
    nodes = [helper.make_node("Relu", ["x"], ["r0"], name="relu0")]
    for i in range(30):  # a chain of nodes kept in float32 by the op block list
        nodes.append(helper.make_node("Exp" if i % 2 else "Log", [f"r{i}"], [f"r{i + 1}"], name=f"n{i}"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("r30", TensorProto.FLOAT, [2])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    assert main(["convert", "--bf16", path, out, "--op-block-list", "Exp,Log,Relu"]) == 0
    text = capsys.readouterr().out
    assert "31 kept in float32" in text
    lines = [x for x in text.splitlines() if x.startswith("  float32:")]
    assert sorted(lines) == ["  float32: 15 x Exp: op type Exp is in the op block list",
                             "  float32: 15 x Log: op type Log is in the op block list",
                             "  float32: Relu 'relu0': op type Relu is in the op block list"]
    assert main(["convert", "--bf16", path, out, "--op-block-list", "Exp,Log,Relu", "--list-kept"]) == 0
    assert len([x for x in capsys.readouterr().out.splitlines() if x.startswith("  float32:")]) == 31


def test_generated_sample_rate_is_16k(tmp_path, capsys):
    """An audio model's sample-rate input ('sr') gets 16000, not a value no branch expects."""
    path = str(tmp_path / "sr.onnx")
    g = helper.make_graph([helper.make_node("Identity", ["sr"], ["y"])], "g",
                          [helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    assert main(["run", path, "--runs", "1"]) == 0
    assert "y: shape=[] dtype=int64 min=16000 max=16000" in capsys.readouterr().out
