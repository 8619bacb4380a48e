"""ortgpu.serving without a server: repository layout and names, config.pbtxt through
tritonclient's proto, session settings, the dynamic batcher and the runner (checked against
onnxruntime). Skipped without tritonclient (the serve extra)."""
from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import threading

import numpy as np
import pytest

if importlib.util.find_spec("tritonclient") is None:
    pytest.skip("tritonclient is not installed (pip install -e '.[serve]')", allow_module_level=True)

import onnxruntime  # noqa: E402

import ortgpu  # noqa: E402
from ortgpu.serving.batching import DynamicBatcher  # noqa: E402
from ortgpu.serving.config import ServingConfig, parse_config, session_settings  # noqa: E402
from ortgpu.serving.errors import BadRequest, ModelLoadError, QueueFull, RepositoryError  # noqa: E402
from ortgpu.serving.repository import Repository, check_model_name, select_versions  # noqa: E402
from ortgpu.serving.runner import ModelRunner, RunnerSettings  # noqa: E402

from support import serving_models as sm  # noqa: E402


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "", ".hidden", "a\\b", "x" * 200, "a\0b"])
def test_model_names_that_could_leave_the_folder_are_refused(name):
    with pytest.raises(RepositoryError, match="invalid model name"):
        check_model_name(name)


def test_repository_scan_versions_and_symlinks(tmp_path):
    sm.write_model(str(tmp_path), "m", sm.scale(1.0), 1)
    sm.write_model(str(tmp_path), "m", sm.scale(2.0), 3)
    os.makedirs(tmp_path / "m" / "0")          # not a version (versions are > 0)
    os.makedirs(tmp_path / "m" / "draft")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "escape")
    repo = Repository(tmp_path)
    assert sorted(repo.models) == ["m"]
    assert sorted(repo.models["m"].versions) == [1, 3]
    with pytest.raises(RepositoryError, match="outside the repository"):
        repo.model_dir("escape")


@pytest.mark.parametrize("policy, kwargs, want", [
    ("latest", {}, [5]), ("latest", {"num_versions": 2}, [3, 5]), ("all", {}, [1, 3, 5]),
    ("specific", {"specific": (1, 4)}, [1])])
def test_version_policies(policy, kwargs, want):
    assert select_versions([3, 1, 5], policy, **kwargs) == want


def test_config_pbtxt_fields():
    cfg = parse_config('''
        max_batch_size: 16
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
        output [ { name: "probs" data_type: TYPE_FP32 dims: [ 3 ] } ]
        dynamic_batching { max_queue_delay_microseconds: 500 preferred_batch_size: [ 8, 4 ]
                           default_queue_policy { max_queue_size: 7 } }
        instance_group [ { count: 2 kind: KIND_GPU } ]
        version_policy { latest { num_versions: 2 } }
        parameters { key: "graph_optimization_level" value { string_value: "basic" } }
        parameters { key: "precision" value { string_value: "fp16" } }
        parameters { key: "enable_cuda_graph" value { string_value: "true" } }
    ''')
    assert (cfg.max_batch_size, cfg.max_queue_delay_us, cfg.preferred_batch_sizes, cfg.max_queue_size) == (16, 500, (4, 8), 7)
    assert (cfg.instance_count, cfg.instance_kind, cfg.version_policy, cfg.num_versions) == (2, "KIND_GPU", "latest", 2)
    assert [(t.name, t.datatype, t.dims) for t in cfg.inputs] == [("x", "FP32", (4,))]
    providers, so, provider_options = session_settings(cfg, ortgpu.SessionOptions)
    assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert so.graph_optimization_level == ortgpu.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.get_session_config_entry("ortgpu.precision") == "fp16"
    assert provider_options == [{"enable_cuda_graph": "1"}, {}]


@pytest.mark.parametrize("text, message", [
    ('max_batch_size: 0 dynamic_batching { }', "dynamic_batching needs max_batch_size > 0"),
    ('max_batch_size: 4 dynamic_batching { preferred_batch_size: 8 }', r"preferred_batch_size \[8\] outside"),
    ('parameters { key: "threads" value { string_value: "2" } }', r"unknown parameters \['threads'\]"),
    ('max_batch_size: "many"', r'cfg.pbtxt: 1:17 .*Couldn.t parse integer'),
    ('instance_group [ { kind: KIND_MODEL } ]', "KIND_MODEL is not supported"),
])
def test_bad_configs_name_the_problem(text, message):
    with pytest.raises(ModelLoadError, match=message):
        parse_config(text, where="cfg.pbtxt")


def test_bad_parameter_values():
    cfg = parse_config('parameters { key: "graph_optimization_level" value { string_value: "max" } }')
    with pytest.raises(ModelLoadError, match="graph_optimization_level: expected one of"):
        session_settings(cfg, ortgpu.SessionOptions)


def _runner(tmp_path, model, config: ServingConfig, backend="ortgpu", **kw):
    path = sm.write_model(str(tmp_path), "m", model)
    return ModelRunner("m", 1, path, config, RunnerSettings(backend=backend, **kw))


@pytest.mark.parametrize("backend", ["ortgpu", "onnxruntime"])
def test_runner_backends_agree_with_onnxruntime(tmp_path, backend):
    model = sm.bert_like()
    runner = _runner(tmp_path, model, parse_config("max_batch_size: 4"), backend)
    feeds = sm.bert_inputs(3)
    got = runner.run(feeds, timeout=60)
    want = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert [t.shape for t in runner.inputs] == [(-1, 32), (-1, 32)]
    runner.close()


def test_runner_refuses_a_batched_config_for_a_fixed_batch_model(tmp_path):
    fixed = sm._model(*_fixed_identity())
    with pytest.raises(ModelLoadError, match="needs a free first"):
        _runner(tmp_path, fixed, parse_config("max_batch_size: 4"))


def _fixed_identity():
    from onnx import TensorProto, helper
    return ([helper.make_node("Identity", ["x"], ["y"])], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [])


def test_runner_checks_requests(tmp_path):
    runner = _runner(tmp_path, sm.mlp(), parse_config("max_batch_size: 2"))
    with pytest.raises(BadRequest, match="batch-size must be <= 2"):
        runner.submit({"x": np.zeros((3, 4), np.float32)})
    with pytest.raises(BadRequest, match=r"Actual: \(tensor\(int64\)\)"):
        runner.submit({"x": np.zeros((1, 4), np.int64)})
    runner.close()


class _Gate:
    """A run function around a real session that waits for a gate (so the queue can be filled)."""

    def __init__(self, sess):
        self.sess, self.open, self.calls = sess, threading.Event(), []

    def __call__(self, feeds):
        self.open.wait(30)
        self.calls.append(feeds["x"].shape[0])
        return self.sess.run(None, feeds)


def test_batcher_batches_splits_bounds_and_drops_cancelled(tmp_path):
    model = sm.mlp()
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    gate = _Gate(sess)
    batcher = DynamicBatcher([gate], max_batch_size=8, dynamic=True, max_queue_delay_s=0.0, max_queue_size=5)
    xs = np.random.default_rng(0).standard_normal((6, 1, 4)).astype(np.float32)
    first = batcher.submit({"x": xs[0]})            # taken by the worker, which waits at the gate
    deadline = 0
    while batcher._queue and deadline < 1000:       # wait until the worker holds it
        threading.Event().wait(0.01)
        deadline += 1
    queued = [batcher.submit({"x": x}) for x in xs[1:]]
    with pytest.raises(QueueFull, match="queue full"):
        batcher.submit({"x": xs[0]})
    queued[1].cancel()                               # its client went away
    gate.open.set()
    ref = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for x, fut in zip(xs, [first] + queued):
        if fut.cancelled():
            continue
        got = fut.result(30)
        want = ref.run(None, {"x": x})
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got[1], want[1])
    assert gate.calls == [1, 4]                      # the 4 live queued requests ran as one batch
    assert batcher.pending() == 0
    batcher.close()
    with pytest.raises(QueueFull, match="shutting down"):
        batcher.submit({"x": xs[0]})
    assert isinstance(queued[1], concurrent.futures.Future) and queued[1].cancelled()


def test_instances_are_sessions_draining_one_queue(tmp_path):
    model = sm.mlp()
    runner = _runner(tmp_path, model, parse_config("max_batch_size: 4 instance_group [ { count: 2 kind: KIND_CPU } ]"))
    assert len(runner.sessions) == 2 and len({id(s) for s in runner.sessions}) == 2
    assert len(runner.batcher._workers) == 2 and all(w.is_alive() for w in runner.batcher._workers)
    xs = np.random.default_rng(5).standard_normal((12, 2, 4)).astype(np.float32)
    ref = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    futures = [runner.submit({"x": x}) for x in xs]
    for x, fut in zip(xs, futures):
        np.testing.assert_allclose(fut.result(30)[0], ref.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    runner.close()
    assert not any(w.is_alive() for w in runner.batcher._workers)
