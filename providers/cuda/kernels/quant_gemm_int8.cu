// int8 x int8 -> int32 GEMM with the requantization in its epilogue, for QLinearMatMul and
// MatMulInteger (launcher: quant_gemm_int8.py; the same results as
// providers/kernels/quantize.py computes on the host).
//
// y[m, n] = sum_k (a[m, k] - a_zp) * (b[k, n] - b_zp[n]) (+ bias[n])   (int32, exact while
//           K * max|a - a_zp| * max|b - b_zp| < 2^31, which the launcher checks)
// then, TY = int: y is stored as it is (MatMulInteger);
//       TY = 8-bit: q = round_half_even(y * mult[n]) + y_zp, clamped to TY's range, where
//       mult = a_scale * b_scale[n] / y_scale (float32, computed by the launcher on the device);
//       the product is taken in float32 when `wide` is 0 (K * 255 * 255 <= 2^24: every |y| is
//       exact in float32) and in float64 otherwise, as the host kernel does, so both round alike.
//
// A is (M, K) row-major, B (K, N) row-major; a_zp and y_zp one value or null (0), b_zp and mult
// one value or one per column (b_zp null: 0); all stay on the device (no host round trip).  Each block
// computes a TILE x TILE tile of y; each thread one element, the shifted operands staged in
// shared memory as int one K-tile at a time.

#define QGEMM_TILE 16

template <typename T> struct QRange;
template <> struct QRange<signed char> { static constexpr int lo = -128, hi = 127; };
template <> struct QRange<unsigned char> { static constexpr int lo = 0, hi = 255; };

template <typename TY>
__device__ __forceinline__ TY qgemm_epilogue(int acc, const float* __restrict__ mult, i64 n, int mult_per_column,
                                             const TY* __restrict__ y_zp, int wide) {
    if constexpr (sizeof(TY) == 4) {
        return static_cast<TY>(acc);
    } else {
        const float m = mult[mult_per_column ? n : 0];
        double v;
        if (wide) v = rint(static_cast<double>(acc) * static_cast<double>(m));
        else v = static_cast<double>(rintf(static_cast<float>(acc) * m));
        if (y_zp != nullptr) v += static_cast<double>(y_zp[0]);
        v = fmin(fmax(v, static_cast<double>(QRange<TY>::lo)), static_cast<double>(QRange<TY>::hi));
        return static_cast<TY>(static_cast<int>(v));
    }
}

template <typename TA, typename TB, typename TY>
__global__ void __launch_bounds__(QGEMM_TILE * QGEMM_TILE) qgemm_int8(
        const TA* __restrict__ a, const TB* __restrict__ b, const TA* __restrict__ a_zp,
        const TB* __restrict__ b_zp, int b_zp_per_column, const float* __restrict__ mult, int mult_per_column,
        const TY* __restrict__ y_zp, const int* __restrict__ bias, TY* __restrict__ y, i64 m_total, i64 n_total,
        i64 k_total, int wide) {
    __shared__ int a_tile[QGEMM_TILE][QGEMM_TILE];
    __shared__ int b_tile[QGEMM_TILE][QGEMM_TILE + 1];   // +1: no bank conflicts on the column reads
    const int tx = threadIdx.x, ty = threadIdx.y;
    const i64 row = static_cast<i64>(blockIdx.y) * QGEMM_TILE + ty;
    const i64 col = static_cast<i64>(blockIdx.x) * QGEMM_TILE + tx;
    const int az = a_zp != nullptr ? static_cast<int>(a_zp[0]) : 0;
    int acc = 0;
    for (i64 k0 = 0; k0 < k_total; k0 += QGEMM_TILE) {
        const i64 ka = k0 + tx, kb = k0 + ty;
        // out-of-range elements are staged as 0 so they add nothing
        a_tile[ty][tx] = (row < m_total && ka < k_total) ? static_cast<int>(a[row * k_total + ka]) - az : 0;
        const int bz = (b_zp != nullptr && col < n_total) ? static_cast<int>(b_zp[b_zp_per_column ? col : 0]) : 0;
        b_tile[ty][tx] = (col < n_total && kb < k_total) ? static_cast<int>(b[kb * n_total + col]) - bz : 0;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < QGEMM_TILE; ++k) acc += a_tile[ty][k] * b_tile[k][tx];
        __syncthreads();
    }
    if (row < m_total && col < n_total) {
        if (bias != nullptr) acc += bias[col];
        y[row * n_total + col] = qgemm_epilogue<TY>(acc, mult, col, mult_per_column, y_zp, wide);
    }
}

// QLinearConv through the GEMM (quant_gemm_int8.py): the 2-D input patches of one group as rows,
// col[p, k] for output position p = (image, out_y, out_x) and k = (channel in group, ky, kx),
// row-major; a position in the padding holds x's zero point, so it adds nothing after the GEMM
// subtracts it (grid-stride over P * K).
template <typename T>
__global__ void qconv_im2col(const T* __restrict__ x, const T* __restrict__ x_zp, T* __restrict__ col,
                             i64 images, i64 channels, i64 channel0, i64 group_channels, i64 height, i64 width,
                             i64 kernel_h, i64 kernel_w, i64 out_h, i64 out_w, i64 stride_h, i64 stride_w,
                             i64 pad_h, i64 pad_w, i64 dilation_h, i64 dilation_w) {
    const i64 k_total = group_channels * kernel_h * kernel_w;
    const i64 total = images * out_h * out_w * k_total;
    const T zero = x_zp != nullptr ? x_zp[0] : static_cast<T>(0);
    const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x;
    for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
        const i64 k = i % k_total, p = i / k_total;
        const i64 kx = k % kernel_w, ky = (k / kernel_w) % kernel_h, c = k / (kernel_w * kernel_h);
        const i64 ox = p % out_w, oy = (p / out_w) % out_h, img = p / (out_w * out_h);
        const i64 iy = oy * stride_h - pad_h + ky * dilation_h, ix = ox * stride_w - pad_w + kx * dilation_w;
        const bool inside = iy >= 0 && iy < height && ix >= 0 && ix < width;
        col[i] = inside ? x[((img * channels + channel0 + c) * height + iy) * width + ix] : zero;
    }
}
