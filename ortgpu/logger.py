"""onnxruntime's default logger: severity, verbosity, a callback, and messages on stderr.

onnxruntime writes its log to stderr by severity (0 verbose, 1 info, 2 warning, 3 error,
4 fatal; the default shows warnings and worse) without any Python logging setup.  ortgpu's
modules log through the Python logger ``"ortgpu"``; the sink installed here prints those
records to stderr in onnxruntime's line shape, or hands them to the callback of
``set_default_logger_callback``, when their severity reaches the threshold in force: the
session's or run's ``log_severity_level`` inside ``scope(options)``, else the default
severity.  Records still propagate to Python logging, so ``caplog`` and user handlers see them.
"""
from __future__ import annotations

import contextvars
import datetime
import logging
import sys
import threading

VERBOSE, INFO, WARNING, ERROR, FATAL = range(5)
_LETTERS = "VIWEF"

_state = {"severity": WARNING, "verbosity": 0, "callback": None}
# (threshold, logid) of the session or run being served, when one sets its own level
_scope: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("ortgpu_log_scope",
                                                                                default=None)


def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or not VERBOSE <= severity <= FATAL:
        raise RuntimeError(f"severity >= 0 && severity <= 4 was false. Invalid logging severity level "
                           f"{severity!r}: use 0 (verbose), 1 (info), 2 (warning), 3 (error) or 4 (fatal)")
    return severity


def set_default_logger_severity(severity: int) -> None:
    """The severity below which the default logger drops messages (2 = warnings and worse)."""
    _state["severity"] = _check_severity(severity)


def set_default_logger_verbosity(verbosity: int) -> None:
    """onnxruntime's VLOG level.  Its verbose-level (VLOG) messages exist only in debug builds
    and ortgpu has none, so the value is kept but changes no output, as in a release build."""
    if isinstance(verbosity, bool) or not isinstance(verbosity, int):
        raise TypeError(f"set_default_logger_verbosity(): verbosity must be an int, not {type(verbosity).__name__}")
    _state["verbosity"] = verbosity


def set_default_logger_callback(callback, severity: int = WARNING) -> None:
    """Send log messages to ``callback(severity, category, logid, code_location, message)``
    instead of stderr, from `severity` on (which becomes the default severity); None restores
    stderr.  Exceptions raised by the callback are swallowed so that logging never breaks a run."""
    if callback is not None and not callable(callback):
        raise RuntimeError(f"set_default_logger_callback(): the callback must be callable or None, "
                           f"not {type(callback).__name__}")
    if callback is not None:
        _state["severity"] = _check_severity(severity)
    _state["callback"] = callback


def default_severity() -> int:
    return _state["severity"]


def effective_severity(*options) -> int:
    """The threshold for messages of a run or session with these options (RunOptions first,
    then SessionOptions): the first ``log_severity_level`` that is set (>= 0), else the default
    severity, as onnxruntime's run logger falls back to the session's and that to the default."""
    for opts in options:
        level = getattr(opts, "log_severity_level", -1)
        if isinstance(level, int) and level >= 0:
            return level
    return _state["severity"]


def is_verbose(*options) -> bool:
    """Whether verbose messages (what the optimizer did, the placement) are wanted."""
    return effective_severity(*options) <= VERBOSE


class scope:  # noqa: N801 - used as a function: ``with scope(run_options, sess_options):``
    """Inside: messages are filtered by the threshold of `options` (see effective_severity)
    and carry the first non-empty logid among them.  A class rather than a generator: every
    run enters one."""

    __slots__ = ("_options", "_token")

    def __init__(self, *options):
        self._options = options

    def __enter__(self) -> None:
        options = self._options
        logid = ""
        for o in options:
            if getattr(o, "logid", ""):
                logid = o.logid
                break
        self._token = _scope.set((effective_severity(*options), logid))

    def __exit__(self, *exc) -> None:
        _scope.reset(self._token)


def _severity_of(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return FATAL
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.WARNING:
        return WARNING
    if levelno >= logging.INFO:
        return INFO
    return VERBOSE


class OrtSink(logging.Handler):
    """Writes ortgpu's records as onnxruntime's default sink does:
    ``2026-12-06 01:02:03.456789 [W:onnxruntime:logid, module.py:12 function] message``."""

    def emit(self, record: logging.LogRecord) -> None:
        severity = _severity_of(record.levelno)
        threshold, logid = _scope.get() or (_state["severity"], "")
        if severity < threshold:
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break the caller
            message = str(record.msg)
        location = f"{record.filename}:{record.lineno} {record.funcName}"
        callback = _state["callback"]
        if callback is not None:
            try:
                callback(severity, "onnxruntime", logid, location, message)
            except Exception:  # noqa: BLE001 - onnxruntime ignores errors raised by the callback
                pass
            return
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        try:
            sys.stderr.write(f"{stamp} [{_LETTERS[severity]}:onnxruntime:{logid}, {location}] {message}\n")
        except Exception:  # noqa: BLE001 - a closed stderr must not break the caller
            pass


class _OrtgpuLogger(logging.Logger):
    """The ``"ortgpu"`` logger: every record reaches the onnxruntime-style sink (which applies
    onnxruntime's thresholds); Python handlers see it only when Python logging's own level
    rules let it through, as for any logger, and nothing falls to logging's last-resort
    handler (the sink already printed it)."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return not self.disabled

    def callHandlers(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        _sink.handle(record)
        if record.levelno < self.getEffectiveLevel():
            return
        current = self
        while current is not None:
            for handler in current.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
            current = current.parent if current.propagate else None


_sink = OrtSink(level=logging.DEBUG)


def _install() -> logging.Logger:
    """Make the ``"ortgpu"`` logger an _OrtgpuLogger, whether or not a module made it first."""
    with _install_lock:
        existing = logging.Logger.manager.loggerDict.get("ortgpu")
        if isinstance(existing, logging.Logger):
            existing.__class__ = _OrtgpuLogger
            return existing
        previous = logging.Logger.manager.loggerClass
        logging.Logger.manager.setLoggerClass(_OrtgpuLogger)
        try:
            return logging.getLogger("ortgpu")
        finally:
            logging.Logger.manager.loggerClass = previous


_install_lock = threading.Lock()
_python_logger = _install()
