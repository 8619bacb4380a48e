"""Op types kept in float32 by the float16/bfloat16 conversion.

`DEFAULT_OP_BLOCK_LIST` has the same members as onnxconverter-common's list of that name, so
that `convert_float_to_float16` means what its function means: ops whose float16 kernels are
missing in onnxruntime, or whose results depend on exact values (indices, thresholds, ranges).

`RUNTIME_OP_BLOCK_LIST` adds, for the session switch ``ortgpu.precision``, the ops whose
float16 result can overflow or lose most of its digits on ordinary data: powers, exponentials
and logarithms, and the reductions that square or multiply (float16 stops at 65504).  Sums,
means, Softmax, LayerNormalization, MatMul, Gemm and convolutions are not here: their kernels
accumulate in float32 and round once, so they run in float16 safely.
"""
from __future__ import annotations

DEFAULT_OP_BLOCK_LIST = (
    "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
    "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier", "LinearRegressor",
    "Normalizer", "OneHotEncoder", "RandomUniformLike", "SVMClassifier", "SVMRegressor",
    "Scaler", "TreeEnsembleClassifier", "TreeEnsembleRegressor", "ZipMap", "NonMaxSuppression",
    "TopK", "RoiAlign", "Resize", "Range", "CumSum", "Min", "Max", "Upsample",
)

NUMERICALLY_SENSITIVE_OPS = (
    "Pow", "Exp", "Log", "Reciprocal", "ReduceSumSquare", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "CumProd",
)

RUNTIME_OP_BLOCK_LIST = DEFAULT_OP_BLOCK_LIST + NUMERICALLY_SENSITIVE_OPS
