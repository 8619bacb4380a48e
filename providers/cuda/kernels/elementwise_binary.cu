// Broadcast element-wise binary ops: arithmetic (same type out) and comparisons (bool out).
//
// Semantics follow providers/kernels/elementwise.py and logic.py: float16 computes in
// float32 and rounds once; integer + - * wrap (two's complement); integer division
// truncates toward zero, a zero divisor gives 0 (the GPU cannot raise) and MIN / -1 wraps;
// Max/Min propagate NaN; comparisons with NaN are false.

enum BinaryOp {
    OP_ADD = 0, OP_SUB = 1, OP_MUL = 2, OP_DIV = 3, OP_POW = 4, OP_MAX = 5, OP_MIN = 6,
    OP_EQUAL = 10, OP_GREATER = 11, OP_LESS = 12, OP_GREATER_EQUAL = 13, OP_LESS_EQUAL = 14,
};

template <typename T, int OP> struct BinaryResult { typedef T type; };
template <typename T> struct BinaryResult<T, OP_EQUAL> { typedef bool type; };
template <typename T> struct BinaryResult<T, OP_GREATER> { typedef bool type; };
template <typename T> struct BinaryResult<T, OP_LESS> { typedef bool type; };
template <typename T> struct BinaryResult<T, OP_GREATER_EQUAL> { typedef bool type; };
template <typename T> struct BinaryResult<T, OP_LESS_EQUAL> { typedef bool type; };

template <typename C>
__device__ __forceinline__ C int_divide(C a, C b) {
    if (b == 0) return 0;
    if constexpr (static_cast<C>(-1) < static_cast<C>(0)) {  // signed: MIN / -1 overflows
        if (b == static_cast<C>(-1)) {
            typedef typename Wrapping<C>::type U;
            return static_cast<C>(static_cast<U>(0) - static_cast<U>(a));  // wrapping negation
        }
    }
    return a / b;  // C++ truncates toward zero
}

// The op on values already in the compute type C; R is the result type before storing.
template <int OP, typename C, typename R>
__device__ __forceinline__ R binary_apply(C a, C b) {
    typedef typename Wrapping<C>::type U;
    if constexpr (OP == OP_ADD) {
        return static_cast<C>(static_cast<U>(a) + static_cast<U>(b));
    } else if constexpr (OP == OP_SUB) {
        return static_cast<C>(static_cast<U>(a) - static_cast<U>(b));
    } else if constexpr (OP == OP_MUL) {
        return static_cast<C>(static_cast<U>(a) * static_cast<U>(b));
    } else if constexpr (OP == OP_DIV) {
        if constexpr (IsFloat<C>::value) {
            return a / b;
        } else {
            return int_divide(a, b);
        }
    } else if constexpr (OP == OP_POW) {
        static_assert(IsFloat<C>::value, "Pow is instantiated for float types only");
        return m_pow(a, b);
    } else if constexpr (OP == OP_MAX) {
        return max_nan(a, b);
    } else if constexpr (OP == OP_MIN) {
        return min_nan(a, b);
    } else if constexpr (OP == OP_EQUAL) {
        return a == b;
    } else if constexpr (OP == OP_GREATER) {
        return a > b;
    } else if constexpr (OP == OP_LESS) {
        return a < b;
    } else if constexpr (OP == OP_GREATER_EQUAL) {
        return a >= b;
    } else {
        static_assert(OP == OP_LESS_EQUAL, "unknown binary op");
        return a <= b;
    }
}

template <typename T, int OP>
__device__ __forceinline__ typename BinaryResult<T, OP>::type binary_element(T a, T b) {
    typedef typename Compute<T>::type C;
    typedef typename BinaryResult<T, OP>::type Out;
    typedef typename BinaryResult<C, OP>::type R;
    return store<Out>(binary_apply<OP, C, R>(load(a), load(b)));
}

// Contiguous operands, or a scalar one: element i reads a[i * a_step], b[i * b_step]
// with steps 0 (scalar) or 1.
template <typename T, int OP>
__global__ void binary_flat(const T* __restrict__ a, const T* __restrict__ b,
                            typename BinaryResult<T, OP>::type* __restrict__ y,
                            i64 n, int a_step, int b_step) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        y[i] = binary_element<T, OP>(a[i * a_step], b[i * b_step]);
    }
}

// General N-D broadcasting through strides (operands 0 and 1 of `bc`); y is contiguous.
template <typename T, int OP, typename I>
__global__ void binary_bcast(const T* __restrict__ a, const T* __restrict__ b,
                             typename BinaryResult<T, OP>::type* __restrict__ y,
                             i64 n, Broadcast bc) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        I offset[2];
        broadcast_offsets<I, 2>(bc, static_cast<I>(i), offset);
        y[i] = binary_element<T, OP>(a[offset[0]], b[offset[1]]);
    }
}
