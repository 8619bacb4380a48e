// Reductions (ReduceSum ... ReduceLogSumExp, and the Global pools) over the middle axis of
// a contiguous (outer, len, inner) view (launcher: reduce.py).
//
// Semantics follow providers/kernels/reduce.py: float16 accumulates in float32, integers
// wrap (two's complement), Max/Min propagate NaN, Mean of integers truncates toward zero,
// L2 of integers is the truncated square root of the (wrapped) sum of squares, and
// LogSumExp shifts by the maximum when it is finite.  The op is a run-time code (uniform
// over the launch), so one instantiation per type serves every op.

enum ReduceCode {
    RED_SUM = 0, RED_MEAN = 1, RED_MAX = 2, RED_MIN = 3, RED_PROD = 4, RED_L1 = 5, RED_L2 = 6,
    RED_SUM_SQUARE = 7, RED_LOG_SUM = 8, RED_LOG_SUM_EXP = 9,
};

template <typename C>
__device__ __forceinline__ C add_wrapping(C a, C b) {
    if constexpr (IsFloat<C>::value) {
        return a + b;
    } else {
        typedef typename Wrapping<C>::type U;
        return static_cast<C>(static_cast<U>(a) + static_cast<U>(b));
    }
}

template <typename C>
__device__ __forceinline__ C mul_wrapping(C a, C b) {
    if constexpr (IsFloat<C>::value) {
        return a * b;
    } else {
        typedef typename Wrapping<C>::type U;
        return static_cast<C>(static_cast<U>(a) * static_cast<U>(b));
    }
}

// One reduction in the compute type C: the value each element contributes (pre), how two
// partial results combine (operator(), usable by row_allreduce), the identity of that
// combination, and the final value from the combined one (post).  `shift` is LogSumExp's
// maximum (0 for the other ops).
template <typename C>
struct Reducer {
    int code;

    __device__ __forceinline__ C identity() const {
        if (code == RED_MAX) return Limits<C>::lowest();
        if (code == RED_MIN) return Limits<C>::highest();
        return code == RED_PROD ? C(1) : C(0);
    }

    __device__ __forceinline__ C operator()(C a, C b) const {
        if (code == RED_MAX) return max_nan(a, b);
        if (code == RED_MIN) return min_nan(a, b);
        return code == RED_PROD ? mul_wrapping(a, b) : add_wrapping(a, b);
    }

    __device__ __forceinline__ C pre(C v, C shift) const {
        if (code == RED_L1) {
            if constexpr (IsFloat<C>::value) {
                return m_abs(v);
            } else {
                return v < C(0) ? mul_wrapping(v, C(-1)) : v;
            }
        }
        if (code == RED_L2 || code == RED_SUM_SQUARE) return mul_wrapping(v, v);
        if constexpr (IsFloat<C>::value) {
            if (code == RED_LOG_SUM_EXP) return m_exp(v - shift);
        }
        return v;
    }

    __device__ __forceinline__ C post(C acc, i64 count, C shift) const {
        if (code == RED_MEAN) return acc / static_cast<C>(count);   // integers: truncates toward 0
        if constexpr (IsFloat<C>::value) {
            if (code == RED_L2) return m_sqrt(acc);
            if (code == RED_LOG_SUM) return m_log(acc);
            if (code == RED_LOG_SUM_EXP) return m_log(acc) + shift;
        } else {
            if (code == RED_L2) return static_cast<C>(sqrt(static_cast<double>(acc)));
        }
        return acc;
    }
};

// LogSumExp's shift: the maximum when it is finite, else 0.
template <typename C>
__device__ __forceinline__ C finite_or_zero(C m) {
    return (m - m == C(0)) ? m : C(0);
}

// inner == 1: each row of (rows, cols) reduced by one warp (short rows, several per block)
// or one block (long rows).  Launch as softmax_rows (module.row_launch_config).
template <typename T>
__global__ void __launch_bounds__(1024) reduce_rows(const T* __restrict__ x, T* __restrict__ y,
                                                    i64 rows, i64 cols, int code) {
    typedef typename Compute<T>::type C;
    __shared__ C scratch[32];
    const Reducer<C> r{code};
    const i64 row = static_cast<i64>(blockIdx.x) * blockDim.y + threadIdx.y;
    const bool valid = row < rows;   // invalid threads still take part in the reductions
    const T* xr = x + (valid ? row : 0) * cols;

    C shift = C(0);
    if (code == RED_LOG_SUM_EXP) {
        C m = Limits<C>::lowest();
        if (valid) {
            for (i64 j = threadIdx.x; j < cols; j += blockDim.x) m = max_nan(m, load(xr[j]));
        }
        shift = finite_or_zero(row_allreduce(m, MaxOp<C>(), Limits<C>::lowest(), scratch));
    }
    C acc = r.identity();
    if (valid) {
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) acc = r(acc, r.pre(load(xr[j]), shift));
    }
    acc = row_allreduce(acc, r, r.identity(), scratch);
    if (valid && threadIdx.x == 0) y[row] = store<T>(r.post(acc, cols, shift));
}

// Any inner: one thread per (outer, inner) output walks the `len` reduced elements, which
// lie `inner` apart (neighbouring threads read neighbouring elements).
template <typename T>
__global__ void reduce_columns(const T* __restrict__ x, T* __restrict__ y, i64 n, i64 len, i64 inner, int code) {
    typedef typename Compute<T>::type C;
    const Reducer<C> r{code};
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const i64 o = i / inner;
        const T* base = x + o * len * inner + (i - o * inner);
        C shift = C(0);
        if (code == RED_LOG_SUM_EXP) {
            C m = Limits<C>::lowest();
            for (i64 k = 0; k < len; ++k) m = max_nan(m, load(base[k * inner]));
            shift = finite_or_zero(m);
        }
        C acc = r.identity();
        for (i64 k = 0; k < len; ++k) acc = r(acc, r.pre(load(base[k * inner]), shift));
        y[i] = store<T>(r.post(acc, len, shift));
    }
}
