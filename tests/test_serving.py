"""ortgpu serve: a real server process on 127.0.0.1 (free ports), driven by tritonclient's HTTP
and gRPC clients and by plain JSON over HTTP; answers checked against onnxruntime.

Skipped where the ``serve`` packages (kserve, tritonclient) are not installed.
"""
from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

# The server runs in a child process; this process must not import kserve: its gRPC protocol
# module and tritonclient.grpc register the same protobuf names, which protobuf refuses twice.
if importlib.util.find_spec("kserve") is None:
    pytest.skip("kserve is not installed (pip install -e '.[serve]')", allow_module_level=True)
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

import onnxruntime  # noqa: E402

from support import serving_models as sm  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT = 120
MAX_BODY = 2 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def slow_model(layers=12, size=256):
    """x FP32 [N,size,size] -> x @ W repeated `layers` times: tens of ms per request."""
    from onnx import helper, numpy_helper, TensorProto
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32), "w")
    nodes, prev = [], "x"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    return sm._model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", size, size])],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", size, size])], [w])


def build_repository(root: str) -> dict:
    models = {"mlp": sm.mlp(), "add_int": sm.add_int(), "slow": slow_model(layers=24)}
    sm.write_model(root, "mlp", models["mlp"], config=sm.batching_config(max_batch_size=8, delay_us=300_000))
    sm.write_model(root, "add_int", models["add_int"])
    sm.write_model(root, "scale", sm.scale(2.0), 1)
    sm.write_model(root, "scale", sm.scale(3.0), 2, config="version_policy { all {} }")
    sm.write_model(root, "slow", models["slow"],
                   config="max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 0 "
                          "default_queue_policy { max_queue_size: 2 } }\n")
    sm.write_model(root, "broken", b"this is not an onnx model")
    return models


class Server:
    """`ortgpu serve` in a child process; stopped with SIGTERM."""

    def __init__(self, repo: str, *extra: str):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://{HOST}:{self.http_port}"
        cmd = [sys.executable, "-c", "import sys, ortgpu.cli; sys.exit(ortgpu.cli.main())", "serve", repo,
               "--host", HOST, "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
               "--max-request-bytes", str(MAX_BODY), "--grace-period", "20", *extra]
        self.log = open(os.path.join(repo, f"server-{self.http_port}.log"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            try:
                if get(self.url + "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not become ready in {START_TIMEOUT} s: {self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self, timeout=60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str, body: bytes | dict, headers=None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def ort_run(model, feeds):
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def metric(url: str, name: str, model: str) -> float:
    text = get(url + "/metrics")[1].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("repo"))
    models = build_repository(root)
    server = Server(root)
    yield server, models
    server.stop()


# -- protocol endpoints through the real Triton clients -------------------------------------------
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_infer_matches_onnxruntime(served, binary):
    server, models = served
    client = httpclient.InferenceServerClient(f"{HOST}:{server.http_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("add_int")
    assert not client.is_model_ready("broken")
    meta = client.get_model_metadata("mlp")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["probs", "label"]
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    inp = httpclient.InferInput("x", [3, 4], "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("probs", "label")]
    result = client.infer("mlp", [inp], outputs=outs)
    want = ort_run(models["mlp"], {"x": x})
    np.testing.assert_allclose(result.as_numpy("probs"), want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("label"), want[1])
    a = np.arange(8, dtype=np.int64).reshape(4, 2)
    ia, ib = httpclient.InferInput("a", [4, 2], "INT64"), httpclient.InferInput("b", [4, 2], "INT64")
    ia.set_data_from_numpy(a, binary_data=binary)
    ib.set_data_from_numpy(a * 10, binary_data=binary)
    np.testing.assert_array_equal(client.infer("add_int", [ia, ib]).as_numpy("sum"), a * 11)
    client.close()


def test_tritonclient_grpc_endpoints_and_versions(served):
    server, models = served
    client = grpcclient.InferenceServerClient(f"{HOST}:{server.grpc_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("scale", "1") and client.is_model_ready("scale", "2")
    assert client.get_server_metadata().name
    meta = client.get_model_metadata("scale", "1")
    assert meta.versions == ["1"] and list(meta.inputs[0].shape) == [-1, 2]
    x = np.array([[1.0, -2.0]], np.float32)
    inp = grpcclient.InferInput("x", [1, 2], "FP32")
    inp.set_data_from_numpy(x)
    for version, factor in (("1", 2.0), ("2", 3.0), ("", 3.0)):  # "" = the latest
        out = client.infer("scale", [inp], model_version=version).as_numpy("y")
        np.testing.assert_array_equal(out, x * factor)
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    inp = grpcclient.InferInput("x", [2, 4], "FP32")
    inp.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("mlp", [inp]).as_numpy("probs"), ort_run(models["mlp"], {"x": x})[0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(InferenceServerException) as e:   # wrong datatype
        bad = grpcclient.InferInput("x", [2, 4], "FP64")
        bad.set_data_from_numpy(x.astype(np.float64))
        client.infer("mlp", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "tensor(float)" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer("nosuch", [inp])
    assert e.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as e:
        client.infer("scale", [inp], model_version="7")
    assert e.value.status() == "StatusCode.NOT_FOUND" and "served versions: [1, 2]" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("broken")
    assert e.value.status() == "StatusCode.UNAVAILABLE" and "not ready" in e.value.message()
    client.close()


def test_plain_json_endpoints(served):
    server, _ = served
    assert get(server.url + "/v2/health/live") == (200, b'{"live":true}')
    status, body = get(server.url + "/v2")
    assert status == 200 and "name" in json.loads(body)
    status, body = post(server.url + "/v2/models/add_int/infer", {
        "id": "req-7", "inputs": [{"name": "a", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]},
                                  {"name": "b", "datatype": "INT64", "shape": [1, 2], "data": [[30, 40]]}]})
    doc = json.loads(body)
    assert status == 200 and doc["id"] == "req-7" and doc["model_version"] == "1"
    assert doc["outputs"] == [{"name": "sum", "shape": [1, 2], "datatype": "INT64", "data": [31, 42]}]
    status, body = get(server.url + "/v2/models/scale/versions/2")
    assert status == 200 and json.loads(body)["versions"] == ["2"]


# -- dynamic batching and the queue bound ---------------------------------------------------------
def test_concurrent_requests_run_as_fewer_batches(served):
    server, models = served
    n = 6
    xs = np.random.default_rng(3).standard_normal((n, 1, 4)).astype(np.float32)
    before = (metric(server.url, "ortgpu_batches_total", "mlp"), metric(server.url, "ortgpu_batched_requests_total", "mlp"))

    def one(i):
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": xs[i].ravel().tolist()}]}
        status, raw = post(server.url + "/v2/models/mlp/infer", body)
        assert status == 200, raw
        return json.loads(raw)["outputs"]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    batches = metric(server.url, "ortgpu_batches_total", "mlp") - before[0]
    requests = metric(server.url, "ortgpu_batched_requests_total", "mlp") - before[1]
    assert requests == n and batches < n, (batches, requests)
    for i, outputs in enumerate(results):
        want = ort_run(models["mlp"], {"x": xs[i]})
        np.testing.assert_allclose(np.array(outputs[0]["data"], np.float32).reshape(1, 3), want[0], rtol=1e-5, atol=1e-6)
        assert outputs[1]["data"] == want[1].tolist()


def test_full_queue_answers_503_and_the_others_are_right(served):
    server, models = served
    x = np.random.default_rng(4).standard_normal((1, 256, 256)).astype(np.float32)
    want = ort_run(models["slow"], {"x": x})[0]
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 256, 256],
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    body = header + x.tobytes()

    def one(_):
        return post(server.url + "/v2/models/slow/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(24)))
    codes = [s for s, _ in results]
    assert codes.count(503) >= 1 and codes.count(200) >= 3 and set(codes) <= {200, 503}, codes
    for status, raw in results:
        if status == 503:
            assert b"queue full" in raw
        else:
            doc = json.loads(raw)
            np.testing.assert_allclose(np.array(doc["outputs"][0]["data"], np.float32).reshape(want.shape), want,
                                       rtol=1e-4, atol=1e-4)


# -- faults --------------------------------------------------------------------------------------
def _x(shape, datatype="FP32", name="x", data=None):
    count = int(np.prod(shape))
    return {"name": name, "datatype": datatype, "shape": shape, "data": data if data is not None else [0.5] * count}


@pytest.mark.parametrize("body, status, pattern", [
    (b'{"inputs": [', 400, r"malformed JSON"),
    (b'[1, 2]', 400, r"JSON object with an 'inputs' list"),
    ({"inputs": [_x([1, 4], "FP64")]}, 400, r"input: x\. Actual: \(tensor\(double\)\).*expected: \(tensor\(float\)\)"),
    ({"inputs": [_x([1, 5])]}, 400, r"invalid dimensions for input: x.*index: 1 Got: 5 Expected: 4"),
    ({"inputs": [_x([4])]}, 400, r"Invalid rank for input: x Got: 1 Expected: 2"),
    ({"inputs": [_x([1, 4], data=[1.0, 2.0])]}, 400, r"input x: 2 elements of data, expected 4"),
    ({"inputs": [_x([1, 4], name="y")]}, 400, r"Required inputs \(\['x'\]\) are missing"),
    ({"inputs": [_x([1, 4]), _x([1, 4], name="z")]}, 400, r"Invalid input name: z"),
    ({"inputs": [_x([9, 4])]}, 400, r"batch-size must be <= 8"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": "1x4", "data": [1]}]}, 400, r"'shape' must be a list"),
    ({"inputs": [_x([1, 4], "COMPLEX")]}, 400, r"unknown datatype 'COMPLEX'"),
    ({"inputs": [_x([1, 4])], "outputs": [{"name": "nope"}]}, 400, r"unknown output 'nope'"),
])
def test_bad_requests_get_400_naming_the_problem(served, body, status, pattern):
    server, _ = served
    code, raw = post(server.url + "/v2/models/mlp/infer", body)
    assert code == status, raw
    assert re.search(pattern, json.loads(raw)["error"], re.S), raw


def test_binary_section_of_the_wrong_size(served):
    server, _ = served
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                     "parameters": {"binary_data_size": 12}}]}).encode()
    code, raw = post(server.url + "/v2/models/mlp/infer", header + b"\0" * 12,
                     {"Inference-Header-Content-Length": str(len(header))})
    assert code == 400 and "12 bytes of binary data, expected 16" in json.loads(raw)["error"]
    code, raw = post(server.url + "/v2/models/mlp/infer", header + b"\0" * 4,
                     {"Inference-Header-Content-Length": str(len(header))})
    assert code == 400 and "runs past" in json.loads(raw)["error"]


def test_unknown_models_versions_and_paths(served):
    server, _ = served
    body = {"inputs": [_x([1, 2])]}
    assert post(server.url + "/v2/models/nosuch/infer", body)[0] == 404
    code, raw = post(server.url + "/v2/models/scale/versions/3/infer", body)
    assert code == 404 and "served versions: [1, 2]" in json.loads(raw)["error"]
    assert post(server.url + "/v2/models/scale/versions/x1/infer", body)[0] == 404
    for path in ("/v2/models/..%2F..%2Fetc/ready", "/v2/models/%2E%2E/ready", "/v2/models/..%2Fscale/infer"):
        code, raw = (get if path.endswith("ready") else lambda u: post(u, body))(server.url + path)
        assert code == 404, (path, code, raw)
    code, raw = post(server.url + "/v2/repository/models/..%2F..%2Ftmp/load", b"")
    assert code == 404 and b"/tmp" not in raw.replace(b"'../../tmp'", b"")


def test_broken_model_is_not_ready_and_the_others_serve(served):
    server, _ = served
    code, raw = get(server.url + "/v2/models/broken/ready")
    assert code == 503 and "Protobuf parsing failed" in json.loads(raw)["error"]
    assert post(server.url + "/v2/models/broken/infer", {"inputs": []})[0] == 503
    assert get(server.url + "/v2/models/add_int/ready")[0] == 200


def _raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """Send `head` + `body` on one connection and read the answer. The body sent is never more
    than the server reads, so closing after the reply cannot reset the connection under it."""
    with socket.create_connection((HOST, port), timeout=30) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: (\d+)", data, re.I).group(1)):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_body_over_the_limit_gets_413(served):
    server, _ = served
    url = "/v2/models/mlp/infer"
    # declared too large: refused from the header, before any of the body is read
    status, doc = _raw_exchange(server.http_port, (f"POST {url} HTTP/1.1\r\nHost: {HOST}\r\n"
                                                   f"Content-Length: {MAX_BODY + 10}\r\n\r\n").encode())
    assert status == 413 and "exceeds the limit" in doc["error"]
    # chunked, no length to check: refused once more than the limit has been read
    chunk = b"{" + b" " * (MAX_BODY // 2)
    chunks = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(2))
    status, doc = _raw_exchange(server.http_port, (f"POST {url} HTTP/1.1\r\nHost: {HOST}\r\n"
                                                   "Transfer-Encoding: chunked\r\n\r\n").encode(), chunks)
    assert status == 413 and "exceeds the limit" in doc["error"]
    assert get(server.url + "/v2/health/ready")[0] == 200
    client = grpcclient.InferenceServerClient(f"{HOST}:{server.grpc_port}")
    big = grpcclient.InferInput("x", [12, 256, 256], "FP32")           # 3 MiB > the 2 MiB limit
    big.set_data_from_numpy(np.zeros((12, 256, 256), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("slow", [big])
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    client.close()


def test_client_disconnect_leaks_nothing(served):
    server, _ = served
    x = np.zeros((1, 256, 256), np.float32)
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 256, 256],
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    body = header + x.tobytes()
    request = (f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
               f"Inference-Header-Content-Length: {len(header)}\r\nConnection: close\r\n\r\n").encode()
    for cut in (len(request) + 100, len(request) + len(body)):   # mid-body, and right after sending it all
        with socket.create_connection((HOST, server.http_port), timeout=10) as s:
            s.sendall((request + body)[:cut])
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while metric(server.url, "ortgpu_requests_pending", "slow") > 0:
        assert time.monotonic() < deadline, "requests of gone clients still pending"
        time.sleep(0.2)
    code, _ = post(server.url + "/v2/models/slow/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    assert code == 200


def test_sigterm_drains_in_flight_requests(tmp_path):
    root = str(tmp_path)
    model = slow_model(layers=60)
    sm.write_model(root, "slow", model)
    server = Server(root, "--no-grpc")
    x = np.random.default_rng(6).standard_normal((1, 256, 256)).astype(np.float32)
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 256, 256],
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    results = []

    def call():
        results.append(post(server.url + "/v2/models/slow/infer", header + x.tobytes(),
                            {"Inference-Header-Content-Length": str(len(header))}))
    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)   # the requests are in flight (each takes > 0.1 s, run one at a time)
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(90)
    rc = server.proc.wait(60)
    log = server.tail()
    server.stop()
    assert rc == 0, log
    assert [s for s, _ in results] == [200, 200, 200], (results, log)
    want = ort_run(model, {"x": x})[0]
    for _, raw in results:
        got = np.array(json.loads(raw)["outputs"][0]["data"], np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    assert "draining" in log
