"""quant_pre_process: shape inference (so calibration knows every tensor's type) and, unless
skipped, ortgpu's basic graph optimizations, saved for the quantizer to read."""
from __future__ import annotations

import onnx
from onnx import shape_inference

from ortgpu.quantization.graph_edit import load


def quant_pre_process(input_model=None, output_model_path=None, skip_optimization=False, skip_onnx_shape=False,
                      skip_symbolic_shape=False, auto_merge=False, int_max=2**31 - 1, guess_output_rank=False,
                      verbose=0, save_as_external_data=False, all_tensors_to_one_file=False,
                      external_data_location=None, external_data_size_threshold=1024, **_):
    model = load(input_model)
    if not skip_optimization:
        model = _optimize(model)
    if not skip_onnx_shape:
        model = shape_inference.infer_shapes(model)
    onnx.save(model, str(output_model_path), save_as_external_data=save_as_external_data)


def _optimize(model: onnx.ModelProto) -> onnx.ModelProto:
    """ortgpu's basic-level graph optimizations, written back as a model (float in, float out)."""
    import tempfile, os
    import ortgpu
    opts = ortgpu.SessionOptions()
    opts.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.onnx")
        opts.optimized_model_filepath = path
        try:
            ortgpu.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            if os.path.exists(path):
                return onnx.load(path)
        except Exception:       # an optimizer that cannot write this model leaves it as it was
            pass
    return model
