"""InferenceSession.run_async: a run on another thread whose results go to a callback.

onnxruntime's ``run_async(output_names, input_feed, callback, user_data, run_options)`` checks
the feed's required names at once (ValueError, from its Python layer), returns None, runs on a
worker thread and calls ``callback(results, user_data, err)``: the outputs as a list and ``""``
on success, an empty list and the error's message (without the ``[ONNXRuntimeError]`` prefix)
on failure.  Here the worker is a thread of its own per call, and an exception raised by the
callback is logged (the "ortgpu" logger, error severity) instead of being lost.
"""
from __future__ import annotations

import logging
import threading

from ortgpu.errors import _OrtError

_log = logging.getLogger("ortgpu")


def _message(error: Exception) -> str:
    return error.message if isinstance(error, _OrtError) else str(error)


def run_async(session, output_names, input_feed, callback, user_data, run_options=None) -> None:
    """Start the run and return; `callback` receives (results, user_data, err) on a worker thread."""
    if not callable(callback):
        raise TypeError(f"run_async(): callback must be callable as callback(results, user_data, err), "
                        f"not {type(callback).__name__}")
    if not isinstance(input_feed, dict):
        raise TypeError(f"run_async(): input_feed must be a dict of input name to value, "
                        f"not {type(input_feed).__name__}")
    required = [i.name for i in session.get_inputs() if not i.type.startswith("optional")]
    missing = [n for n in required if n not in input_feed]
    if missing:
        raise ValueError(f"Required inputs ({missing}) are missing from input feed ({list(input_feed)}).")
    names = list(output_names) if output_names else None
    feed = dict(input_feed)

    def work():
        try:
            results, err = session.run(names, feed, run_options), ""
        except Exception as e:  # noqa: BLE001 - every failure is reported to the callback
            results, err = [], _message(e)
        try:
            callback(results, user_data, err)
        except Exception:  # noqa: BLE001 - nowhere to raise on a worker thread
            _log.exception("run_async: the callback raised")

    threading.Thread(target=work, name="ortgpu-run-async", daemon=False).start()
