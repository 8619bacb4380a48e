// Softmax and LogSoftmax over the last axis of a contiguous (rows, cols) view.
//
// Three passes over each row, as providers/kernels/normalization.py computes it: the
// maximum (NaN propagates), the sum of exp(x - max), then the outputs exp(x - max) / sum or
// (x - max) - log(sum).  Statistics are kept in float32 for float16 and float32, in double
// for double.  A row of -inf gives NaN, as in NumPy.
//
// Launch: blockDim = (32, R) for short rows (one warp per row, R rows per block), or
// (k * 32, 1) for long rows (one block per row); grid.x = ceil(rows / blockDim.y).

template <typename T, bool LOG>
__global__ void __launch_bounds__(1024) softmax_rows(const T* __restrict__ x, T* __restrict__ y, i64 rows, i64 cols) {
    typedef typename Compute<T>::type C;
    __shared__ C scratch[32];
    const i64 row = static_cast<i64>(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool valid = row < rows;   // invalid threads still take part in the reductions
    const T* xr = x + (valid ? row : 0) * cols;

    C m = neg_infinity<C>();
    if (valid) {
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) m = max_nan(m, load(xr[j]));
    }
    m = row_allreduce(m, MaxOp<C>(), neg_infinity<C>(), scratch);

    C s = C(0);
    if (valid) {
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) s += m_exp(load(xr[j]) - m);
    }
    s = row_allreduce(s, SumOp<C>(), C(0), scratch);

    if (!valid) return;
    T* yr = y + row * cols;
    if constexpr (LOG) {
        const C log_s = m_log(s);
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = store<T>((load(xr[j]) - m) - log_s);
    } else {
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = store<T>(m_exp(load(xr[j]) - m) / s);
    }
}
