"""Raw CUDA kernels of the CUDA provider: .cu sources in this folder, compiled by CuPy's
RawModule (``module.py``), and launchers registered for ``provider="cuda"``.

Families: broadcast binary arithmetic and comparisons (``binary``), activations and Clip
(``activations``), Softmax/LogSoftmax (``softmax``), LayerNormalization (``layernorm``),
Where (``where``), Cast/CastLike (``cast``), layout copies for Transpose, Concat, Split and
Slice (``copy``), Gather/GatherND/ScatterND (``gather``), Resize/Upsample (``resize``),
pooling (``pool``), the Reduce ops (``reduce``), RoiAlign (``roi_align``) and the generated
kernels of ``ortgpu::FusedElementwise`` programs (``fused_elementwise``).  Each launcher
handles the cases its kernel
covers and calls the shared kernel of ``providers/kernels/`` for everything else, so the
results never depend on which path ran.

Importing this package needs no CuPy (it is imported inside the launchers).  The kernels
compile for sm_80 and sm_90 (``tests/test_cuda_compile.py``) but have never run on a GPU:
none was available when they were written.
"""
from ortgpu.providers.cuda.kernels import (  # noqa: F401  (registers the kernels)
    activations,
    binary,
    cast,
    copy,
    fused_elementwise,
    gather,
    layernorm,
    pool,
    reduce,
    resize,
    roi_align,
    softmax,
    where,
)
# com.microsoft ops with raw kernels (contrib_*.cu), each falling back to its shared kernel
from ortgpu.providers.cuda.kernels import contrib_layernorm  # noqa: F401,E402
from ortgpu.providers.cuda.kernels import contrib_gelu  # noqa: F401,E402
from ortgpu.providers.cuda.kernels import contrib_rotary  # noqa: F401,E402
from ortgpu.providers.cuda.kernels import contrib_matmul_nbits  # noqa: F401,E402
from ortgpu.providers.cuda.kernels import contrib_groupnorm  # noqa: F401,E402
from ortgpu.providers.cuda.kernels import contrib_gqa  # noqa: F401,E402
# the int8 GEMM with requantization in its epilogue (QLinearMatMul, MatMulInteger)
from ortgpu.providers.cuda.kernels import quant_gemm_int8  # noqa: F401,E402
