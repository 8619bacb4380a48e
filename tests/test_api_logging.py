"""onnxruntime's default logger in ortgpu: messages on stderr by severity without any Python
logging setup, set_default_logger_severity / _verbosity / _callback, checked against onnxruntime."""
from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import onnxruntime
import pytest

import ortgpu
from ortgpu import logger


@pytest.fixture(autouse=True)
def _restore_logger():
    yield
    ortgpu.set_default_logger_callback(None)
    ortgpu.set_default_logger_severity(2)


def _stderr_of(module: str, body: str) -> str:
    """stderr of a fresh Python process that imports `module` as ort and runs `body`."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from support import model_builders as mb
        import {module} as ort
        model = mb.identity().SerializeToString()
    """) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


VERBOSE_SESSION = """
    so = ort.SessionOptions()
    so.log_severity_level = 0
    ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
"""
QUIET_SESSION = """
    ort.InferenceSession(model, providers=["CPUExecutionProvider"])
"""
DEFAULT_VERBOSE = """
    ort.set_default_logger_severity(0)
    ort.InferenceSession(model, providers=["CPUExecutionProvider"])
"""


@pytest.mark.parametrize("body, prints", [(VERBOSE_SESSION, True), (QUIET_SESSION, False), (DEFAULT_VERBOSE, True)],
                         ids=["session_verbose", "default_warning", "default_verbose"])
def test_messages_reach_stderr_by_severity_like_onnxruntime(body, prints):
    ref = _stderr_of("onnxruntime", body)
    assert bool(ref.strip()) == prints, f"onnxruntime's logging changed for this case: {ref[:300]!r}"
    got = _stderr_of("ortgpu", body)
    assert bool(got.strip()) == prints, got[:500]
    if prints:  # onnxruntime's line shape: "<time> [<severity letter>:onnxruntime:<logid>, <where>] <message>"
        assert ":onnxruntime:" in ref.splitlines()[0]
        assert all(":onnxruntime:" in line for line in got.splitlines()), got[:500]
        assert "placement:" in got


def test_logid_and_severity_letters():
    lines = _stderr_of("ortgpu", """
        import logging
        so = ort.SessionOptions()
        so.log_severity_level = 0
        so.logid = "mysession"
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        logging.getLogger("ortgpu").warning("a warning %d", 7)
        logging.getLogger("ortgpu").info("an info line")
        ort.set_default_logger_severity(3)
        logging.getLogger("ortgpu").warning("a hidden warning")
        logging.getLogger("ortgpu").error("an error")
    """).splitlines()
    assert any("[I:onnxruntime:mysession, " in line and "placement:" in line for line in lines)
    assert any("[W:onnxruntime:, " in line and line.endswith("a warning 7") for line in lines)
    assert not any("an info line" in line for line in lines)      # default severity 2 hides info
    assert not any("a hidden warning" in line for line in lines)  # severity 3 hides warnings
    assert any("[E:onnxruntime:, " in line and line.endswith("an error") for line in lines)


def test_python_logging_still_sees_records(caplog):
    so = ortgpu.SessionOptions()
    so.log_severity_level = 0
    with caplog.at_level(logging.INFO, logger="ortgpu"):
        ortgpu.InferenceSession(__import__("support.model_builders", fromlist=["identity"]).identity().SerializeToString(), so)
    assert "placement:" in caplog.text


@pytest.mark.parametrize("severity", [-1, 5])
def test_invalid_severity_is_refused_like_onnxruntime(severity):
    with pytest.raises(RuntimeError, match="severity >= 0 && severity <= 4"):
        onnxruntime.set_default_logger_severity(severity)
    with pytest.raises(RuntimeError, match="severity >= 0 && severity <= 4"):
        ortgpu.set_default_logger_severity(severity)
    with pytest.raises(RuntimeError):
        onnxruntime.set_default_logger_callback(lambda *a: None, severity)
    with pytest.raises(RuntimeError):
        ortgpu.set_default_logger_callback(lambda *a: None, severity)


def test_callback_receives_records_like_onnxruntime():
    model = __import__("support.model_builders", fromlist=["identity"]).identity().SerializeToString()
    for mod in (onnxruntime, ortgpu):
        got = []
        mod.set_default_logger_callback(lambda *rec: got.append(rec), severity=0)
        try:
            mod.InferenceSession(model, providers=["CPUExecutionProvider"])
        finally:
            mod.set_default_logger_callback(None)
            mod.set_default_logger_severity(2)
        assert got, f"{mod.__name__}: the callback was never called"
        for sev, category, logid, where, message in got:
            assert isinstance(sev, int) and 0 <= sev <= 4
            assert all(isinstance(s, str) for s in (category, logid, where, message))
    with pytest.raises(RuntimeError):
        onnxruntime.set_default_logger_callback("not a callable")
    with pytest.raises(RuntimeError):
        ortgpu.set_default_logger_callback("not a callable")


def test_a_raising_callback_does_not_break_the_session():
    def boom(*_):
        raise ValueError("from the callback")
    ortgpu.set_default_logger_callback(boom, severity=0)
    sess = ortgpu.InferenceSession(__import__("support.model_builders", fromlist=["identity"]).identity().SerializeToString())
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_thresholds():
    so, ro = ortgpu.SessionOptions(), ortgpu.RunOptions()
    assert logger.effective_severity(so) == 2
    ortgpu.set_default_logger_severity(0)
    assert logger.effective_severity(so) == 0 and logger.is_verbose(so)
    so.log_severity_level = 3
    assert logger.effective_severity(so) == 3
    ro.log_severity_level = 1
    assert logger.effective_severity(ro, so) == 1  # the run's level wins over the session's
    ortgpu.set_default_logger_verbosity(4)  # accepted, as onnxruntime (no VLOG output in release builds)
    onnxruntime.set_default_logger_verbosity(0)
