"""What the user asked for, gathered in one object: onnxruntime's StaticQuantConfig and
DynamicQuantConfig (same argument names), plus the settings every writer reads."""
from __future__ import annotations

from dataclasses import dataclass, field

from ortgpu.quantization.quant_types import CalibrationMethod, QuantFormat, QuantType, as_quant_type

# The op types each format quantizes when op_types_to_quantize is not given.
QDQ_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "AveragePool", "MaxPool",
           "GlobalAveragePool", "Concat", "Sigmoid", "LeakyRelu", "Softmax", "Flatten", "Reshape",
           "Transpose", "Squeeze", "Unsqueeze", "Resize", "Gather", "Relu", "Clip", "Where", "Split",
           "EmbedLayerNormalization")
QOPERATOR_OPS = ("Conv", "MatMul", "Gemm", "Add", "Mul", "GlobalAveragePool", "AveragePool", "Sigmoid",
                 "LeakyRelu", "Concat", "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze")
DYNAMIC_OPS = ("MatMul", "Conv", "Gather")


class QuantConfig:
    def __init__(self, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=None,
                 nodes_to_quantize=None, nodes_to_exclude=None, per_channel=False, reduce_range=False,
                 use_external_data_format=False):
        self.activation_type = as_quant_type(activation_type)
        self.weight_type = as_quant_type(weight_type)
        self.op_types_to_quantize = op_types_to_quantize
        self.nodes_to_quantize = nodes_to_quantize
        self.nodes_to_exclude = nodes_to_exclude
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        self.use_external_data_format = use_external_data_format


class StaticQuantConfig(QuantConfig):
    def __init__(self, calibration_data_reader, calibrate_method=CalibrationMethod.MinMax,
                 quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                 op_types_to_quantize=None, nodes_to_quantize=None, nodes_to_exclude=None, per_channel=False,
                 reduce_range=False, use_external_data_format=False, calibration_providers=None, extra_options=None):
        super().__init__(activation_type, weight_type, op_types_to_quantize, nodes_to_quantize, nodes_to_exclude,
                         per_channel, reduce_range, use_external_data_format)
        self.calibration_data_reader = calibration_data_reader
        self.calibrate_method = calibrate_method
        self.quant_format = quant_format
        self.calibration_providers = calibration_providers
        self.extra_options = dict(extra_options or {})


class DynamicQuantConfig(QuantConfig):
    def __init__(self, weight_type=QuantType.QInt8, op_types_to_quantize=None, nodes_to_quantize=None,
                 nodes_to_exclude=None, per_channel=False, reduce_range=False, use_external_data_format=False,
                 extra_options=None):
        super().__init__(QuantType.QUInt8, weight_type, op_types_to_quantize, nodes_to_quantize, nodes_to_exclude,
                         per_channel, reduce_range, use_external_data_format)
        self.extra_options = dict(extra_options or {})


@dataclass
class Settings:
    """The resolved choices a writer needs, defaults filled as onnxruntime fills them."""
    activation_type: QuantType
    weight_type: QuantType
    op_types: tuple
    per_channel: bool = False
    reduce_range: bool = False
    nodes_to_quantize: tuple = ()
    nodes_to_exclude: tuple = ()
    extra: dict = field(default_factory=dict)
    constants: frozenset = frozenset()       # initializer names of the model being quantized

    @property
    def activation_symmetric(self) -> bool:
        return bool(self.extra.get("ActivationSymmetric", False))

    @property
    def weight_symmetric(self) -> bool:
        default = self.weight_type in (QuantType.QInt8, QuantType.QInt16, QuantType.QInt4, QuantType.QFLOAT8E4M3FN)
        return bool(self.extra.get("WeightSymmetric", default))

    def wants(self, node) -> bool:
        """Whether this node is to be quantized under the op-type and node-name filters."""
        if node.op_type not in self.op_types:
            return False
        if self.nodes_to_quantize and node.name not in self.nodes_to_quantize:
            return False
        if (node.op_type == "MatMul" and self.extra.get("MatMulConstBOnly", False)
                and node.input[1] not in self.constants):
            return False
        return node.name not in self.nodes_to_exclude


def make_settings(activation_type, weight_type, op_types_to_quantize, default_ops, per_channel, reduce_range,
                  nodes_to_quantize, nodes_to_exclude, extra_options) -> Settings:
    ops = tuple(op_types_to_quantize) if op_types_to_quantize else default_ops
    return Settings(as_quant_type(activation_type), as_quant_type(weight_type), ops, bool(per_channel),
                    bool(reduce_range), tuple(nodes_to_quantize or ()), tuple(nodes_to_exclude or ()),
                    dict(extra_options or {}))
