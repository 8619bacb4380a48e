"""Where onnxruntime keeps its exception classes; re-exported so `except` clauses keep working."""
from ortgpu.errors import *  # noqa: F401,F403
from ortgpu.errors import __all__  # noqa: F401
