// The GELU family of com.microsoft: Gelu, BiasGelu (erf form), FastGelu (tanh form, optional
// bias), QuickGelu (x * sigmoid(alpha * x)) and BiasSplitGelu, as
// providers/kernels/contrib_activations.py: the bias is added in the compute type (float32
// for float16) and the result rounded once.
//
// gelu_bias: y[i] = f(x[i] + bias[i % cols]) over n contiguous elements (bias may be null);
//   kind 0 = erf GELU, 1 = tanh GELU, 2 = x * sigmoid(alpha * x).
// bias_split_gelu: x (rows, 2 * half) + bias (2 * half); y (rows, half) = left * Gelu(right).
//
// Launch: grid-stride, one thread per output element (module.launch_elementwise).

template <typename C>
__device__ __forceinline__ C sigmoid_of(C v) {   // no overflow for either sign
    if (v >= C(0)) return C(1) / (C(1) + m_exp(-v));
    const C e = m_exp(v);
    return e / (C(1) + e);
}

template <typename C>
__device__ __forceinline__ C gelu_erf(C v) {     // 0.5 * v * erfc(-v / sqrt(2)): no cancellation
    return C(0.5) * v * m_erfc(v * C(-0.70710678118654752440));
}

template <typename C>
__device__ __forceinline__ C gelu_tanh(C v) {    // 0.5 * v * (1 + tanh(u)) == v * sigmoid(2u)
    const C c = C(1.5957691216057307);            // 2 * sqrt(2 / pi)
    return v * sigmoid_of(c * (v + C(0.044715) * (v * v * v)));
}

template <typename T>
__global__ void gelu_bias(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                          i64 n, i64 cols, int kind, typename Compute<T>::type alpha) {
    typedef typename Compute<T>::type C;
    const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x;
    for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        C v = load(x[i]);
        if (bias != nullptr) v += load(bias[i % cols]);
        C r;
        if (kind == 0) r = gelu_erf(v);
        else if (kind == 1) r = gelu_tanh(v);
        else r = v * sigmoid_of(v * alpha);
        y[i] = store<T>(r);
    }
}

template <typename T>
__global__ void bias_split_gelu(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                                i64 n, i64 half) {
    typedef typename Compute<T>::type C;
    const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x;
    for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const i64 row = i / half, j = i % half;
        const T* xr = x + row * 2 * half;
        const C left = load(xr[j]) + load(bias[j]);
        const C right = load(xr[j + half]) + load(bias[j + half]);
        y[i] = store<T>(left * gelu_erf(right));
    }
}
