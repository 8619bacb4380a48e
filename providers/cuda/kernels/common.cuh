// Device helpers shared by every kernel source in this folder.
//
// The loader puts this text in front of each .cu file before compiling, so the sources
// include no headers at all: NVRTC 13.0 ships without cuda_fp16.h and gets no include
// path here.  Float16 is therefore a plain 16-bit struct converted with PTX instructions.
//
// Conventions:
//   * T is the element type in memory, C = Compute<T>::type the type arithmetic runs in
//     (float for float16, the type itself otherwise), as the NumPy kernels do.
//   * i64 sizes and offsets; kernels loop grid-stride so any grid size is correct.

typedef long long i64;

#define ORTGPU_MAX_DIMS 8

// IEEE binary16, stored as its bits (same layout as numpy.float16 and CUDA's __half).
struct alignas(2) half_t {
    unsigned short bits;
};

#ifdef ORTGPU_HOST_EMULATION
// Host twin of the conversions below, for the CPU emulator of tests/cuda_emulator (never
// compiled for a GPU): exact, round to nearest even, NaN payloads kept as NumPy keeps them.
#define ORTGPU_EMU_HALF_TYPE half_t

__device__ __forceinline__ float half_to_float(half_t h) {
    const unsigned sign = (h.bits & 0x8000u) << 16;
    const unsigned exp = (h.bits >> 10) & 0x1fu;
    const unsigned mant = h.bits & 0x3ffu;
    unsigned bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (mant << 13);            // inf, NaN
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);   // normal: rebias 15 -> 127
    } else {
        const float f = static_cast<float>(mant) * 5.9604644775390625e-8f;   // mant * 2^-24, exact
        __builtin_memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
}

// The float16 nearest to sig * 2^exp2 (sig > 0 an integer holding the source's significand,
// its top bit at 2^top), rounded once to nearest even, with the sign bit `sign`.
__device__ __forceinline__ half_t half_from_parts(unsigned short sign, unsigned long long sig,
                                                  int exp2, int top) {
    const int e = exp2 + top;                 // the value lies in [2^e, 2^(e+1))
    if (e < -25) return half_t{sign};         // below half the smallest subnormal
    const int q = (e < -14 ? -14 : e) - 10;   // exponent of the float16 ulp there
    const int shift = q - exp2;               // > 0 for float and double sources
    unsigned long long r = sig >> shift;
    const unsigned long long rem = sig & ((1ull << shift) - 1);
    const unsigned long long halfway = 1ull << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1))) ++r;
    // exponent field (e + 15) minus 1 plus r, whose implicit bit 0x400 adds the 1 back
    // (subnormals: field 0, r < 0x400); a rounding carry moves into the exponent.
    const unsigned long long bits = (static_cast<unsigned long long>(e < -14 ? -14 : e) + 14) * 0x400 + r;
    return half_t{static_cast<unsigned short>(sign | (bits >= 0x7c00 ? 0x7c00 : bits))};
}

__device__ __forceinline__ half_t float_to_half(float f) {   // round to nearest even
    unsigned u;
    __builtin_memcpy(&u, &f, 4);
    const unsigned short sign = static_cast<unsigned short>((u >> 16) & 0x8000u);
    const unsigned exp = (u >> 23) & 0xffu;
    const unsigned mant = u & 0x7fffffu;
    if (exp == 0xffu) {   // inf, or NaN keeping the top of its payload (never turning into inf)
        const unsigned short m = static_cast<unsigned short>(mant >> 13);
        return half_t{static_cast<unsigned short>(sign | 0x7c00u | (mant && !m ? 1u : m))};
    }
    if (exp == 0) return half_t{sign};   // zero and float subnormals (< 2^-126)
    return half_from_parts(sign, mant | 0x800000u, static_cast<int>(exp) - 150, 23);
}

__device__ __forceinline__ half_t double_to_half(double d) {  // one rounding, as NumPy
    unsigned long long u;
    __builtin_memcpy(&u, &d, 8);
    const unsigned short sign = static_cast<unsigned short>((u >> 48) & 0x8000u);
    const unsigned exp = static_cast<unsigned>((u >> 52) & 0x7ffu);
    const unsigned long long mant = u & 0xfffffffffffffull;
    if (exp == 0x7ffu) {
        const unsigned short m = static_cast<unsigned short>(mant >> 42);
        return half_t{static_cast<unsigned short>(sign | 0x7c00u | (mant && !m ? 1u : m))};
    }
    if (exp == 0) return half_t{sign};
    return half_from_parts(sign, mant | 0x10000000000000ull, static_cast<int>(exp) - 1075, 52);
}

#else  // the device path

__device__ __forceinline__ float half_to_float(half_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
    return f;
}

__device__ __forceinline__ half_t float_to_half(float f) {   // round to nearest even
    half_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
    return h;
}

__device__ __forceinline__ half_t double_to_half(double d) {  // one rounding, as NumPy
    half_t h;
    asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h.bits) : "d"(d));
    return h;
}

#endif  // ORTGPU_HOST_EMULATION

// ------------------------------------------------------------------ type traits

template <typename T> struct Compute { typedef T type; };
template <> struct Compute<half_t> { typedef float type; };

template <typename T> struct IsFloat { static constexpr bool value = false; };
template <> struct IsFloat<float> { static constexpr bool value = true; };
template <> struct IsFloat<double> { static constexpr bool value = true; };
template <> struct IsFloat<half_t> { static constexpr bool value = true; };

// Unsigned twin of a signed integer, so that + - * wrap without undefined behaviour.
template <typename T> struct Wrapping { typedef T type; };
template <> struct Wrapping<signed char> { typedef unsigned char type; };
template <> struct Wrapping<short> { typedef unsigned short type; };
template <> struct Wrapping<int> { typedef unsigned int type; };
template <> struct Wrapping<long long> { typedef unsigned long long type; };

// ------------------------------------------------------------------ conversions

// Convert<D, S>::run(v): the value v of type S as type D, with C semantics (as CuPy's
// astype on the device): float to integer truncates, to bool tests != 0 (NaN is true).
template <typename D, typename S> struct Convert {
    static __device__ __forceinline__ D run(S v) { return static_cast<D>(v); }
};
template <typename S> struct Convert<half_t, S> {
    static __device__ __forceinline__ half_t run(S v) { return float_to_half(static_cast<float>(v)); }
};
template <> struct Convert<half_t, double> {
    static __device__ __forceinline__ half_t run(double v) { return double_to_half(v); }
};
template <typename D> struct Convert<D, half_t> {
    static __device__ __forceinline__ D run(half_t v) { return static_cast<D>(half_to_float(v)); }
};
template <> struct Convert<half_t, half_t> {
    static __device__ __forceinline__ half_t run(half_t v) { return v; }
};
template <typename S> struct Convert<bool, S> {
    static __device__ __forceinline__ bool run(S v) { return v != static_cast<S>(0); }
};
template <> struct Convert<bool, half_t> {
    static __device__ __forceinline__ bool run(half_t v) { return half_to_float(v) != 0.0f; }
};
template <> struct Convert<bool, bool> {
    static __device__ __forceinline__ bool run(bool v) { return v; }
};

// Load an element into its compute type, and store a compute value back.
template <typename T>
__device__ __forceinline__ typename Compute<T>::type load(T v) {
    return Convert<typename Compute<T>::type, T>::run(v);
}
template <typename T, typename C>
__device__ __forceinline__ T store(C v) {
    return Convert<T, C>::run(v);
}

// ------------------------------------------------------------------ math in C = float | double

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }
__device__ __forceinline__ float m_erfc(float x) { return erfcf(x); }
__device__ __forceinline__ double m_erfc(double x) { return erfc(x); }
__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return pow(x, y); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }

template <typename C> __device__ __forceinline__ C neg_infinity();
template <> __device__ __forceinline__ float neg_infinity<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_infinity<double>() {
    return __longlong_as_double(0xfff0000000000000ULL);
}

// NumPy's maximum/minimum: NaN in either argument gives NaN (fmax/fmin would drop it).
template <typename C> __device__ __forceinline__ C max_nan(C a, C b) { return (a != a || a > b) ? a : b; }
template <typename C> __device__ __forceinline__ C min_nan(C a, C b) { return (a != a || a < b) ? a : b; }

// ------------------------------------------------------------------ reductions over a row

template <typename C> struct SumOp {
    __device__ __forceinline__ C operator()(C a, C b) const { return a + b; }
};
template <typename C> struct MaxOp {
    __device__ __forceinline__ C operator()(C a, C b) const { return max_nan(a, b); }
};

// Butterfly reduction: every lane of the warp ends with the result.
template <typename C, typename Op>
__device__ __forceinline__ C warp_allreduce(C v, Op op) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
    }
    return v;
}

// Reduce v over the threads of one row (threadIdx.x); every thread of the row gets the
// result.  Launch contract: blockDim.x is a multiple of 32, and blockDim.x == 32 (rows are
// warps, several per block) or blockDim.y == 1 (one row per block).  Every thread of the
// block must call it (it may synchronize the block).  scratch holds 32 values.  Kernels
// using it declare __launch_bounds__(1024) so that a 1024-thread block always launches.
template <typename C, typename Op>
__device__ __forceinline__ C row_allreduce(C v, Op op, C identity, C* scratch) {
    v = warp_allreduce(v, op);
    if (blockDim.x == 32) {
        return v;
    }
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    __syncthreads();  // the scratch of a previous call has been read by everyone
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    v = lane < warps ? scratch[lane] : identity;
    return warp_allreduce(v, op);
}

// Layer-norm statistics of one row whose element j is value(j), j < cols, in the compute type
// C, in two passes (layernorm.cu, contrib_layernorm.cu): mean = sum / cols (left 0 when not
// centred: RMS norm), inv = 1 / sqrt(sum((v - mean)^2) / cols + epsilon).  Threads of a row
// past the end (valid false) add nothing but still take part in the reductions, so every
// thread of the block must call it, as row_allreduce.
template <typename C> struct RowStats { C mean, inv; };

template <typename C, typename Value>
__device__ __forceinline__ RowStats<C> row_norm_stats(Value value, i64 cols, bool valid, bool centred,
                                                      C epsilon, C* scratch) {
    const C count = static_cast<C>(cols);
    C mean = C(0);
    if (centred) {
        C s = C(0);
        if (valid) {
            for (i64 j = threadIdx.x; j < cols; j += blockDim.x) s += value(j);
        }
        mean = row_allreduce(s, SumOp<C>(), C(0), scratch) / count;
    }
    C ss = C(0);
    if (valid) {
        for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
            const C d = value(j) - mean;
            ss += d * d;
        }
    }
    const C var = row_allreduce(ss, SumOp<C>(), C(0), scratch) / count;
    return RowStats<C>{mean, C(1) / m_sqrt(var + epsilon)};
}

// ------------------------------------------------------------------ planes of (h, w)

// Where element i of a contiguous (planes, h, w) array stands: its plane, row and column
// (pool.cu, resize.cu: one thread an output element).
struct PlaneYX { i64 p, y, x; };

__device__ __forceinline__ PlaneYX plane_yx(i64 i, i64 h, i64 w) {
    const i64 rest = i / w;
    const i64 p = rest / h;
    return PlaneYX{p, rest - p * h, i - rest * w};
}

// ------------------------------------------------------------------ broadcasting

// Output shape and per-operand strides (in elements, 0 along broadcast dims) of up to K
// operands, dims collapsed by the launcher.  All fields are 64-bit: no padding, so the host
// builds it as a NumPy structured array of int64 fields in this order (module.broadcast_dtype).
// The fixed kernels use three operands (Broadcast); generated kernels one per input.
template <int K>
struct BroadcastOf {
    i64 ndim;
    i64 shape[ORTGPU_MAX_DIMS];
    i64 stride[K][ORTGPU_MAX_DIMS];
};
typedef BroadcastOf<3> Broadcast;

// Offsets of output element `linear` in each of the first N operands.  I is int when every
// index and offset fits in 31 bits (faster division), long long otherwise.
template <typename I, int N, int K>
__device__ __forceinline__ void broadcast_offsets(const BroadcastOf<K>& b, I linear, I (&offset)[N]) {
    static_assert(N <= K, "more offsets asked for than the struct has operands");
#pragma unroll
    for (int k = 0; k < N; ++k) {
        offset[k] = 0;
    }
#pragma unroll
    for (int d = ORTGPU_MAX_DIMS - 1; d >= 0; --d) {
        if (d < b.ndim) {
            const I size = static_cast<I>(b.shape[d]);
            const I q = linear / size;
            const I r = linear - q * size;
#pragma unroll
            for (int k = 0; k < N; ++k) {
                offset[k] += r * static_cast<I>(b.stride[k][d]);
            }
            linear = q;
        }
    }
}

// First index and step of a grid-stride loop.
__device__ __forceinline__ i64 grid_start() { return static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 grid_step() { return static_cast<i64>(gridDim.x) * blockDim.x; }

// The coordinates of flat index e in a row-major (n0, n1, n2, n3) array (n0 is implied).
struct Index4 {
    i64 i0, i1, i2, i3;
};
__device__ __forceinline__ Index4 unflatten4(i64 e, i64 n1, i64 n2, i64 n3) {
    Index4 ix;
    ix.i3 = e % n3;
    e /= n3;
    ix.i2 = e % n2;
    e /= n2;
    ix.i1 = e % n1;
    ix.i0 = e / n1;
    return ix;
}

// ------------------------------------------------------------------ limits

// Limits<C>::lowest() / highest(): the identities of max and min (infinities for floats).
template <typename C> struct Limits;
template <> struct Limits<float> {
    static __device__ __forceinline__ float lowest() { return neg_infinity<float>(); }
    static __device__ __forceinline__ float highest() { return -neg_infinity<float>(); }
};
template <> struct Limits<double> {
    static __device__ __forceinline__ double lowest() { return neg_infinity<double>(); }
    static __device__ __forceinline__ double highest() { return -neg_infinity<double>(); }
};
#define ORTGPU_INT_LIMITS(T, LO, HI)                                       \
    template <> struct Limits<T> {                                         \
        static __device__ __forceinline__ T lowest() { return LO; }        \
        static __device__ __forceinline__ T highest() { return HI; }       \
    };
ORTGPU_INT_LIMITS(signed char, -128, 127)
ORTGPU_INT_LIMITS(unsigned char, 0, 255)
ORTGPU_INT_LIMITS(short, -32768, 32767)
ORTGPU_INT_LIMITS(unsigned short, 0, 65535)
ORTGPU_INT_LIMITS(int, -2147483647 - 1, 2147483647)
ORTGPU_INT_LIMITS(unsigned int, 0u, 4294967295u)
ORTGPU_INT_LIMITS(long long, -9223372036854775807LL - 1, 9223372036854775807LL)
ORTGPU_INT_LIMITS(unsigned long long, 0ULL, 18446744073709551615ULL)
#undef ORTGPU_INT_LIMITS
