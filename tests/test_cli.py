"""The command line: `ortgpu run` on given and generated inputs, `ortgpu demo`."""
import numpy as np
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


def test_demo_matches_onnxruntime(capsys):
    assert main(["demo", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "placement:" in out and "on CPUExecutionProvider" in out
    assert "max abs difference" in out
    diff = float(out.split("max abs difference")[1].split()[0])
    assert diff < 1e-5
