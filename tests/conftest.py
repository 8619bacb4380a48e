import os
import tempfile

os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "ortgpu_onnx_home"))
