"""The entry points users call, with onnxruntime.quantization's signatures."""
from __future__ import annotations

import onnx

from ortgpu.errors import InvalidArgument
from ortgpu.quantization import calibration
from ortgpu.quantization.dynamic_writer import DynamicWriter
from ortgpu.quantization.graph_edit import load
from ortgpu.quantization.qdq_writer import QDQWriter
from ortgpu.quantization.qoperator_writer import QOperatorWriter
from ortgpu.quantization.quant_config import (DYNAMIC_OPS, QDQ_OPS, QOPERATOR_OPS, DynamicQuantConfig,
                                              StaticQuantConfig, make_settings)
from ortgpu.quantization.quant_types import CalibrationMethod, QuantFormat, QuantType

last_report: list[dict] = []


def _save(model, path, external: bool):
    onnx.save(model, str(path), save_as_external_data=external)


def _format(value) -> QuantFormat:
    name = getattr(value, "name", value)
    if name not in QuantFormat.__members__:
        raise InvalidArgument(f"quant_format: expected QDQ or QOperator, got {value!r}")
    return QuantFormat[name]


def calibration_targets(model: onnx.ModelProto, settings) -> list[str]:
    """Float activations read or written by the nodes to be quantized."""
    types = calibration.float_tensor_types(model)
    inits = {i.name for i in model.graph.initializer}
    names = []
    for n in model.graph.node:
        if not settings.wants(n):
            continue
        for x in list(n.input) + list(n.output):
            if x and x not in inits and types.get(x) == onnx.TensorProto.FLOAT \
                    and x not in names:
                names.append(x)
    return names


def quantize_static(model_input, model_output, calibration_data_reader, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=None, per_channel=False, reduce_range=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_quantize=None,
                    nodes_to_exclude=None, use_external_data_format=False, calibrate_method=CalibrationMethod.MinMax,
                    calibration_providers=None, extra_options=None):
    """Calibrate on ortgpu with the reader's feeds, then write the QDQ or QOperator model."""
    global last_report
    fmt = _format(quant_format)
    model = load(model_input)
    settings = make_settings(activation_type, weight_type, op_types_to_quantize,
                             QDQ_OPS if fmt == QuantFormat.QDQ else QOPERATOR_OPS, per_channel, reduce_range,
                             nodes_to_quantize, nodes_to_exclude, extra_options)
    settings.constants = frozenset(i.name for i in model.graph.initializer)
    names = calibration_targets(model, settings)
    ranges = calibration.calibrate(model, names, calibration_data_reader, calibrate_method, settings.extra,
                                   calibration_providers)
    types = calibration.float_tensor_types(model)
    writer = (QDQWriter if fmt == QuantFormat.QDQ else QOperatorWriter)(model, settings, ranges, types)
    out = writer.write()
    last_report = writer.report
    _save(out, model_output, use_external_data_format)


def quantize_dynamic(model_input, model_output, op_types_to_quantize=None, per_channel=False, reduce_range=False,
                     weight_type=QuantType.QInt8, nodes_to_quantize=None, nodes_to_exclude=None,
                     use_external_data_format=False, extra_options=None):
    """Weights quantized offline, activations at run time: no calibration data needed."""
    global last_report
    model = load(model_input)
    settings = make_settings(QuantType.QUInt8, weight_type, op_types_to_quantize, DYNAMIC_OPS, per_channel,
                             reduce_range, nodes_to_quantize, nodes_to_exclude, extra_options)
    writer = DynamicWriter(model, settings)
    out = writer.write()
    last_report = writer.report
    _save(out, model_output, use_external_data_format)


def quantize(model_input, model_output, quant_config):
    """Dispatch on the config's class, as onnxruntime.quantization.quantize does."""
    c = quant_config
    if isinstance(c, StaticQuantConfig):
        return quantize_static(model_input, model_output, c.calibration_data_reader, c.quant_format,
                               c.op_types_to_quantize, c.per_channel, c.reduce_range, c.activation_type,
                               c.weight_type, c.nodes_to_quantize, c.nodes_to_exclude, c.use_external_data_format,
                               c.calibrate_method, c.calibration_providers, c.extra_options)
    if isinstance(c, DynamicQuantConfig):
        return quantize_dynamic(model_input, model_output, c.op_types_to_quantize, c.per_channel, c.reduce_range,
                                c.weight_type, c.nodes_to_quantize, c.nodes_to_exclude, c.use_external_data_format,
                                c.extra_options)
    raise InvalidArgument(f"quant_config: expected StaticQuantConfig or DynamicQuantConfig, got {type(c).__name__}")
