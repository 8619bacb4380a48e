// Unary activations on contiguous tensors, and Clip.
//
// Formulas match providers/kernels/activations.py: float16 computes in float32 and rounds
// once; the overflow-free forms of Sigmoid and Softplus; exact Gelu through erfc (no
// cancellation for negative x); NaN passes through every op.  p0 and p1 are the op's
// attributes in the compute type (alpha, beta), unused ones ignored.

enum UnaryOp {
    OP_RELU = 0, OP_LEAKY_RELU = 1, OP_SIGMOID = 2, OP_TANH = 3, OP_GELU_ERF = 4,
    OP_GELU_TANH = 5, OP_ERF = 6, OP_HARD_SIGMOID = 7, OP_HARD_SWISH = 8, OP_SOFTPLUS = 9,
    OP_ELU = 10,
};

// clamp to [0, 1] keeping NaN (fminf/fmaxf would turn NaN into a bound)
template <typename C>
__device__ __forceinline__ C clamp01(C v) {
    return v < C(0) ? C(0) : (v > C(1) ? C(1) : v);
}

template <typename C>
__device__ __forceinline__ C sigmoid(C x) {
    const C e = m_exp(-m_abs(x));
    return x >= C(0) ? C(1) / (C(1) + e) : e / (C(1) + e);
}

template <int OP, typename C>
__device__ __forceinline__ C unary_apply(C x, C p0, C p1) {
    if constexpr (OP == OP_RELU) {
        return x < C(0) ? C(0) : x;
    } else if constexpr (OP == OP_LEAKY_RELU) {
        return x < C(0) ? x * p0 : x;
    } else if constexpr (OP == OP_SIGMOID) {
        return sigmoid(x);
    } else if constexpr (OP == OP_TANH) {
        return m_tanh(x);
    } else if constexpr (OP == OP_GELU_ERF) {  // 0.5 x erfc(-x / sqrt 2)
        return C(0.5) * x * m_erfc(x * C(-0.70710678118654752440));
    } else if constexpr (OP == OP_GELU_TANH) {  // 0.5 x (1 + tanh(u)) == x sigmoid(2u)
        const C c = C(1.5957691216057307117597842397375);  // 2 sqrt(2 / pi)
        return x * sigmoid(c * (x + C(0.044715) * x * x * x));
    } else if constexpr (OP == OP_ERF) {
        return m_erf(x);
    } else if constexpr (OP == OP_HARD_SIGMOID) {
        return clamp01(x * p0 + p1);
    } else if constexpr (OP == OP_HARD_SWISH) {
        return x * clamp01(x * C(1.0 / 6.0) + C(0.5));
    } else if constexpr (OP == OP_SOFTPLUS) {  // max(x, 0) + log1p(exp(-|x|))
        return max_nan(x, C(0)) + m_log1p(m_exp(-m_abs(x)));
    } else {
        static_assert(OP == OP_ELU, "unknown unary op");
        return x < C(0) ? p0 * m_expm1(x) : x;
    }
}

// y[i] = op(x[i]) for contiguous x and y of n elements.  Relu is also instantiated for
// integer T (C = T there, and only the comparison runs).
template <typename T, int OP>
__global__ void unary_flat(const T* __restrict__ x, T* __restrict__ y, i64 n,
                           typename Compute<T>::type p0, typename Compute<T>::type p1) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        y[i] = store<T>(unary_apply<OP>(load(x[i]), p0, p1));
    }
}

// Clip: y = min(max(x, lo), hi) with NaN kept, as NumPy's maximum then minimum.  A bound
// comes from a one-element device tensor (lo_ptr / hi_ptr, opset 11+) when that pointer is
// set, else from the value (lo / hi, attributes of opset 6) when has_lo / has_hi, else it
// is open.  Bounds are already of type T, as the ONNX spec requires.
template <typename T>
__global__ void clip_flat(const T* __restrict__ x, T* __restrict__ y, i64 n,
                          const T* __restrict__ lo_ptr, const T* __restrict__ hi_ptr,
                          typename Compute<T>::type lo, typename Compute<T>::type hi,
                          int has_lo, int has_hi) {
    typedef typename Compute<T>::type C;
    if (lo_ptr != nullptr) { lo = load(*lo_ptr); has_lo = 1; }
    if (hi_ptr != nullptr) { hi = load(*hi_ptr); has_hi = 1; }
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        C v = load(x[i]);
        if (has_lo) v = max_nan(v, lo);
        if (has_hi) v = min_nan(v, hi);
        y[i] = store<T>(v);
    }
}
