// SkipLayerNormalization and SkipSimplifiedLayerNormalization (com.microsoft) over the hidden
// axis of a contiguous (rows, cols) view.
//
// Per row: s = input + skip (+ bias) in the compute type (float32 for float16), then, as
// providers/kernels/contrib_normalization.py, mean = sum(s) / cols (0 when simplified: RMS
// norm), var = sum((s - mean)^2) / cols, inv = 1 / sqrt(var + epsilon),
// y = (s - mean) * inv * gamma (+ beta).  s is recomputed from the inputs in each pass rather
// than kept, so a row of any length fits.  skip has skip_rows rows and is read at row % skip_rows
// (a (S, H) or (1, S, H) skip broadcast over the batch).  beta, bias, mean_out, inv_out and
// sum_out may be null; mean_out/inv_out take one compute-type value per row, sum_out the
// rounded s.
//
// Launch: as layernorm_rows (blockDim (32, R) for short rows, (k * 32, 1) for long ones).

template <typename T>
__device__ __forceinline__ typename Compute<T>::type skip_sum(const T* xr, const T* sr, const T* bias, i64 j) {
    typename Compute<T>::type v = load(xr[j]) + load(sr[j]);
    if (bias != nullptr) v += load(bias[j]);
    return v;
}

template <typename T>
__global__ void __launch_bounds__(1024) skip_layernorm_rows(
        const T* __restrict__ x, const T* __restrict__ skip, const T* __restrict__ gamma,
        const T* __restrict__ beta, const T* __restrict__ bias, T* __restrict__ y,
        typename Compute<T>::type* __restrict__ mean_out, typename Compute<T>::type* __restrict__ inv_out,
        T* __restrict__ sum_out, i64 rows, i64 cols, i64 skip_rows, int simplified,
        typename Compute<T>::type epsilon) {
    typedef typename Compute<T>::type C;
    __shared__ C scratch[32];
    const i64 row = static_cast<i64>(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool valid = row < rows;   // invalid threads still take part in the reductions
    const i64 r = valid ? row : 0;
    const T* xr = x + r * cols;
    const T* sr = skip + (r % skip_rows) * cols;
    const RowStats<C> st = row_norm_stats([&](i64 j) { return skip_sum(xr, sr, bias, j); }, cols, valid,
                                          !simplified, epsilon, scratch);
    const C mean = st.mean, inv = st.inv;

    if (!valid) return;
    T* yr = y + row * cols;
    for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
        const C s = skip_sum(xr, sr, bias, j);
        C v = (s - mean) * inv * load(gamma[j]);
        if (beta != nullptr) v += load(beta[j]);
        yr[j] = store<T>(v);
        if (sum_out != nullptr) sum_out[row * cols + j] = store<T>(s);
    }
    if (threadIdx.x == 0) {
        if (mean_out != nullptr) mean_out[row] = mean;
        if (inv_out != nullptr) inv_out[row] = inv;
    }
}
