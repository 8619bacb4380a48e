"""ortgpu.quantization: onnxruntime.quantization's user-facing API (quantize_dynamic,
quantize_static, quantize, the configs and enums, quant_pre_process, MatMulNBitsQuantizer),
written on onnx helpers and calibrated on ortgpu sessions."""
from ortgpu.quantization.api import quantize, quantize_dynamic, quantize_static
from ortgpu.quantization.calibration import CalibrationDataReader
from ortgpu.quantization.preprocess import quant_pre_process
from ortgpu.quantization.quant_config import DynamicQuantConfig, QuantConfig, StaticQuantConfig
from ortgpu.quantization.quant_types import CalibrationMethod, QuantFormat, QuantType
from ortgpu.quantization.report import format_report, qdq_error_report
from ortgpu.quantization.weight_only import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

__all__ = ["quantize", "quantize_dynamic", "quantize_static", "CalibrationDataReader", "quant_pre_process",
           "DynamicQuantConfig", "QuantConfig", "StaticQuantConfig", "CalibrationMethod", "QuantFormat",
           "QuantType", "qdq_error_report", "format_report", "DefaultWeightOnlyQuantConfig", "MatMulNBitsQuantizer"]
