// MatMulNBits (com.microsoft): Y = A @ dequantize(B).T (+ bias), as
// providers/kernels/contrib_quant_nbits.py.  B holds N rows of K `bits`-wide unsigned values
// (bits 2, 4 or 8) in blocks of block_size along K, blob = block_size * bits / 8 bytes a block,
// first value in the low bits.  Weight w[n, k] = (q - zero) * scale of block k / block_size,
// in float32, where zero is
//   zp_packed (uint8, zp_row_bytes a row, one `bits` field a block, low bits first), or
//   zp_float (one value of T a block), or, both null, 2^(bits - 1).
//
// nbits_gemv: one output row of A (batch 1): y[n] = sum_k a[k] * w[n, k] (+ bias[n]) summed in
//   float32 by one row of threads per n (launch as layernorm_rows: rows = N, cols = K), the
//   weight dequantized as it is read, never stored.
// nbits_dequantize: w (N, K) float32 for a cuBLAS GEMM when A has more rows (grid-stride).

__device__ __forceinline__ float nbits_field(const unsigned char* bytes, i64 index, int bits) {
    const i64 bit = index * bits;
    return static_cast<float>((bytes[bit >> 3] >> (bit & 7)) & ((1 << bits) - 1));
}

template <typename T>
__device__ __forceinline__ float nbits_weight(const unsigned char* __restrict__ b, const T* __restrict__ scales,
                                              const unsigned char* __restrict__ zp_packed,
                                              const T* __restrict__ zp_float, i64 n, i64 k, i64 k_blocks,
                                              i64 block_size, int bits, i64 zp_row_bytes) {
    const i64 kb = k / block_size;
    const i64 blob = block_size * bits / 8;
    const float q = nbits_field(b + (n * k_blocks + kb) * blob, k % block_size, bits);
    float zero;
    if (zp_packed != nullptr) zero = nbits_field(zp_packed + n * zp_row_bytes, kb, bits);
    else if (zp_float != nullptr) zero = static_cast<float>(load(zp_float[n * k_blocks + kb]));
    else zero = static_cast<float>(1 << (bits - 1));
    return (q - zero) * static_cast<float>(load(scales[n * k_blocks + kb]));
}

template <typename T>
__global__ void __launch_bounds__(1024) nbits_gemv(
        const T* __restrict__ a, const unsigned char* __restrict__ b, const T* __restrict__ scales,
        const unsigned char* __restrict__ zp_packed, const T* __restrict__ zp_float,
        const T* __restrict__ bias, T* __restrict__ y, i64 n_out, i64 k_total, i64 k_blocks,
        i64 block_size, int bits, i64 zp_row_bytes) {
    __shared__ float scratch[32];
    const i64 n = static_cast<i64>(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool valid = n < n_out;   // invalid threads still take part in the reduction
    float acc = 0.0f;
    if (valid) {
        for (i64 k = threadIdx.x; k < k_total; k += blockDim.x) {
            acc += static_cast<float>(load(a[k])) *
                   nbits_weight(b, scales, zp_packed, zp_float, n, k, k_blocks, block_size, bits, zp_row_bytes);
        }
    }
    acc = row_allreduce(acc, SumOp<float>(), 0.0f, scratch);
    if (!valid || threadIdx.x != 0) return;
    if (bias != nullptr) acc += static_cast<float>(load(bias[n]));
    y[n] = store<T>(acc);
}

template <typename T>
__global__ void nbits_dequantize(const unsigned char* __restrict__ b, const T* __restrict__ scales,
                                 const unsigned char* __restrict__ zp_packed, const T* __restrict__ zp_float,
                                 float* __restrict__ w, i64 n_out, i64 k_total, i64 k_blocks,
                                 i64 block_size, int bits, i64 zp_row_bytes) {
    const i64 total = n_out * k_total;
    const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x;
    for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
        w[i] = nbits_weight(b, scales, zp_packed, zp_float, i / k_total, i % k_total, k_blocks, block_size,
                            bits, zp_row_bytes);
    }
}
