import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "ortgpu_onnx_home"))
