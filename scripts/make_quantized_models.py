"""Build the quantized test models of tests/data/quantized/ with onnxruntime's own tools.

Small float models are written with onnx.helper from seeded random weights, then quantized the
ways users quantize for onnxruntime: quantize_dynamic (MatMul, LSTM, fused Attention and
EmbedLayerNormalization), quantize_static with a calibration reader in both the QDQ and the
QOperator formats (uint8 and int8 activations, per-tensor and per-channel weights), and the
MatMulNBits 4-/8-bit weight-only quantizer (MatMul and Gather).  The dynamic MLP is also saved
after onnxruntime's own graph optimizations, which fuse it into DynamicQuantizeMatMul and
MatMulIntegerToFloat.  Each NAME.onnx has NAME.npz beside it holding its test inputs.

    python scripts/make_quantized_models.py [out_dir]   (needs onnxruntime and onnx_ir)
"""
from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

MS = "com.microsoft"
F = TensorProto.FLOAT


def _init(rng, name, shape, scale=0.3):
    return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits, ms=False):
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(MS, 1)] if ms else [])
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=inits),
                          opset_imports=opsets, ir_version=9)
    onnx.checker.check_model(m)
    return m


def mlp(rng, d_in=64, hidden=96, d_out=32):
    """MatMul + Add + Relu + MatMul + Add; K a multiple of the MatMulNBits blocks."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["h2"]),
             helper.make_node("Relu", ["h2"], ["h3"]), helper.make_node("MatMul", ["h3", "w2"], ["h4"]),
             helper.make_node("Add", ["h4", "b2"], ["y"])]
    inits = [_init(rng, "w1", (d_in, hidden)), _init(rng, "b1", (hidden,)), _init(rng, "w2", (hidden, d_out)),
             _init(rng, "b2", (d_out,))]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["n", d_in])],
                  [helper.make_tensor_value_info("y", F, ["n", d_out])], inits)


def cnn(rng):
    """Conv, pools, Add, Mul, LeakyRelu, Sigmoid, Where, Concat, GlobalAveragePool, Gemm, Softmax:
    the ops the QOperator format has quantized kernels for."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "c1w", "c1b"], ["a1"], pads=[1, 1, 1, 1]), n("Relu", ["a1"], ["a2"]),
             n("AveragePool", ["a2"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Conv", ["p1", "c2w", "c2b"], ["b1"], pads=[1, 1, 1, 1]), n("Add", ["b1", "p1"], ["b2"]),
             n("LeakyRelu", ["b2"], ["b3"], alpha=0.1), n("Sigmoid", ["p1"], ["s1"]),
             n("Mul", ["b3", "s1"], ["m1"]), n("Concat", ["m1", "p1"], ["c1"], axis=1),
             n("GlobalAveragePool", ["c1"], ["g1"]), n("Flatten", ["g1"], ["f1"]),
             n("Gemm", ["f1", "fw", "fb"], ["logits"], transB=1), n("Softmax", ["logits"], ["y"])]
    inits = [_init(rng, "c1w", (8, 3, 3, 3)), _init(rng, "c1b", (8,), 0.1), _init(rng, "c2w", (8, 8, 3, 3), 0.15),
             _init(rng, "c2b", (8,), 0.1), _init(rng, "fw", (10, 16)), _init(rng, "fb", (10,), 0.1)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["n", 3, 16, 16])],
                  [helper.make_tensor_value_info("y", F, ["n", 10])], inits)


def lstm(rng, n_in=12, hidden=16):
    nodes = [helper.make_node("LSTM", ["x", "w", "r", "b"], ["y", "h", "c"], hidden_size=hidden,
                              direction="bidirectional")]
    inits = [_init(rng, "w", (2, 4 * hidden, n_in)), _init(rng, "r", (2, 4 * hidden, hidden)),
             _init(rng, "b", (2, 8 * hidden), 0.1)]
    return _model(nodes, [helper.make_tensor_value_info("x", F, ["s", "n", n_in])],
                  [helper.make_tensor_value_info("y", F, ["s", 2, "n", hidden])] +
                  [helper.make_tensor_value_info(o, F, [2, "n", hidden]) for o in ("h", "c")], inits)


def bert_block(rng, vocab=50, hidden=32, heads=4, seq=16):
    """EmbedLayerNormalization + Attention + a MatMul, as the transformers optimizer fuses BERT."""
    n = helper.make_node
    nodes = [n("EmbedLayerNormalization", ["ids", "seg", "we", "pe", "se", "gamma", "beta", "mask"],
               ["emb", "mask_index"], domain=MS, epsilon=1e-12),
             n("Attention", ["emb", "qkv_w", "qkv_b", "mask_index"], ["att"], domain=MS, num_heads=heads),
             n("MatMul", ["att", "ow"], ["y"])]
    inits = [_init(rng, "we", (vocab, hidden)), _init(rng, "pe", (seq, hidden)), _init(rng, "se", (2, hidden)),
             numpy_helper.from_array(np.ones(hidden, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(hidden, np.float32), "beta"),
             _init(rng, "qkv_w", (hidden, 3 * hidden), 0.2), _init(rng, "qkv_b", (3 * hidden,), 0.05),
             _init(rng, "ow", (hidden, hidden), 0.2)]
    ints = [helper.make_tensor_value_info(k, TensorProto.INT32, ["n", "s"]) for k in ("ids", "seg", "mask")]
    return _model(nodes, ints, [helper.make_tensor_value_info("y", F, ["n", "s", hidden])], inits, ms=True)


def embedding(rng, vocab=40, hidden=64):
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("MatMul", ["e", "w"], ["y"])]
    inits = [_init(rng, "table", (vocab, hidden)), _init(rng, "w", (hidden, 32))]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", "s"])],
                  [helper.make_tensor_value_info("y", F, ["n", "s", 32])], inits)


def ort_optimized(src, dst):
    """The model as onnxruntime's extended graph optimizations leave it (its fused quantized ops)."""
    opts = onnxruntime.SessionOptions()
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    onnxruntime.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    return dst


class Reader(CalibrationDataReader):
    """Seeded calibration batches for quantize_static."""

    def __init__(self, name, shape, count=8, seed=0):
        rng = np.random.default_rng(seed)
        self.batches = iter([{name: rng.normal(size=shape).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self.batches, None)


def save(out, name, model, feeds):
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else Path(model).read_bytes()
    (out / f"{name}.onnx").write_bytes(data)
    np.savez_compressed(out / f"{name}.npz", **feeds)
    ops = sorted({f"{nd.domain + ':' if nd.domain else ''}{nd.op_type}" for nd in onnx.load(out / f"{name}.onnx").graph.node})
    print(f"{name}: {', '.join(ops)}")


def main(out: Path) -> None:
    logging.disable(logging.INFO)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    tmp = Path(tempfile.mkdtemp())
    x_mlp = {"x": rng.normal(size=(5, 64)).astype(np.float32)}

    float_mlp = mlp(rng)
    onnx.save(float_mlp, tmp / "mlp.onnx")
    for signed in (False, True):
        name = f"mlp_dynamic_{'s8' if signed else 'u8'}"
        quantize_dynamic(tmp / "mlp.onnx", tmp / f"{name}.onnx",
                         weight_type=QuantType.QInt8 if signed else QuantType.QUInt8)
        save(out, name, tmp / f"{name}.onnx", x_mlp)
    save(out, "mlp_dynamic_fused", ort_optimized(out / "mlp_dynamic_s8.onnx", tmp / "mlp_dynamic_fused.onnx"), x_mlp)

    for bits, sym, level in ((4, True, None), (4, False, 4), (8, False, None)):
        config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=sym, accuracy_level=level, bits=bits)
        q = MatMulNBitsQuantizer(mlp(np.random.default_rng(7)), bits=bits, block_size=32, is_symmetric=sym,
                                 accuracy_level=level, algo_config=config)
        q.process()
        save(out, f"mlp_nbits{bits}_{'sym' if sym else 'asym'}", q.model.model, x_mlp)

    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, op_types_to_quantize=("Gather", "MatMul"),
                                          quant_axes=(("Gather", 1), ("MatMul", 0)))
    q = MatMulNBitsQuantizer(embedding(rng), block_size=32, is_symmetric=False, op_types_to_quantize=("Gather", "MatMul"),
                             quant_axes=(("Gather", 1), ("MatMul", 0)), algo_config=config)
    q.process()
    save(out, "embedding_nbits4", q.model.model, {"ids": rng.integers(0, 40, (2, 7)).astype(np.int64)})

    onnx.save(cnn(rng), tmp / "cnn.onnx")
    x_cnn = {"x": rng.normal(size=(2, 3, 16, 16)).astype(np.float32)}
    for fmt in ("qoperator", "qdq"):
        for act, per_channel in ((QuantType.QUInt8, False), (QuantType.QInt8, True)):
            name = f"cnn_static_{fmt}_{'u8' if act == QuantType.QUInt8 else 's8'}{'_perchannel' if per_channel else ''}"
            quantize_static(tmp / "cnn.onnx", tmp / f"{name}.onnx", Reader("x", (2, 3, 16, 16)),
                            quant_format=QuantFormat.QOperator if fmt == "qoperator" else QuantFormat.QDQ,
                            activation_type=act, weight_type=QuantType.QInt8, per_channel=per_channel)
            save(out, name, tmp / f"{name}.onnx", x_cnn)
    save(out, "cnn_static_qdq_u8_fused", ort_optimized(out / "cnn_static_qdq_u8.onnx", tmp / "qdq_fused.onnx"), x_cnn)

    onnx.save(lstm(rng), tmp / "lstm.onnx")
    quantize_dynamic(tmp / "lstm.onnx", tmp / "lstm_dynamic.onnx", weight_type=QuantType.QInt8)
    save(out, "lstm_dynamic", tmp / "lstm_dynamic.onnx", {"x": rng.normal(size=(5, 3, 12)).astype(np.float32)})

    onnx.save(bert_block(rng), tmp / "bert.onnx")
    quantize_dynamic(tmp / "bert.onnx", tmp / "bert_dynamic.onnx", weight_type=QuantType.QInt8)
    mask = np.ones((2, 10), np.int32)
    mask[1, 7:] = 0
    feeds = {"ids": rng.integers(0, 50, (2, 10)).astype(np.int32), "seg": rng.integers(0, 2, (2, 10)).astype(np.int32),
             "mask": mask}
    save(out, "bert_block_dynamic", tmp / "bert_dynamic.onnx", feeds)
    save(out, "bert_block_dynamic_fused", ort_optimized(out / "bert_block_dynamic.onnx", tmp / "bert_fused.onnx"), feeds)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else
         Path(__file__).resolve().parent.parent / "tests" / "data" / "quantized")
