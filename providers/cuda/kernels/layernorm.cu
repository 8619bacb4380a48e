// LayerNormalization over the trailing axes of a contiguous (rows, cols) view.
//
// Two-pass statistics in the compute type (float32 for float16/float32, double for double),
// as providers/kernels/normalization.py: mean = sum(x) / cols, var = sum((x - mean)^2) / cols,
// inv = 1 / sqrt(var + epsilon), y = (x - mean) * inv * scale + bias.  scale and bias
// (bias may be null) hold `cols` elements of T; mean_out and inv_out (each may be null)
// receive one compute-type value per row.
//
// Launch: as softmax_rows (blockDim (32, R) for short rows, (k * 32, 1) for long ones).

template <typename T>
__global__ void __launch_bounds__(1024) layernorm_rows(const T* __restrict__ x, const T* __restrict__ scale,
                               const T* __restrict__ bias, T* __restrict__ y,
                               typename Compute<T>::type* __restrict__ mean_out,
                               typename Compute<T>::type* __restrict__ inv_out,
                               i64 rows, i64 cols, typename Compute<T>::type epsilon) {
    typedef typename Compute<T>::type C;
    __shared__ C scratch[32];
    const i64 row = static_cast<i64>(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool valid = row < rows;   // invalid threads still take part in the reductions
    const T* xr = x + (valid ? row : 0) * cols;
    const RowStats<C> st = row_norm_stats([&](i64 j) { return load(xr[j]); }, cols, valid, true,
                                          epsilon, scratch);
    const C mean = st.mean, inv = st.inv;

    if (!valid) return;
    T* yr = y + row * cols;
    for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
        C v = (load(xr[j]) - mean) * inv * load(scale[j]);
        if (bias != nullptr) v += load(bias[j]);
        yr[j] = store<T>(v);
    }
    if (threadIdx.x == 0) {
        if (mean_out != nullptr) mean_out[row] = mean;
        if (inv_out != nullptr) inv_out[row] = inv;
    }
}
