// Index-driven copies: Gather, GatherND and ScatterND (launcher: gather.py).
//
// Every index is checked on the device while it is used: an index outside [-dim, dim)
// is not followed; the kernel writes 0 for it (gathers) or skips it (scatters) and raises
// the error flag `bad` (bad[0] = 1, bad[1] = the index, bad[2] = the dim's size).  The
// launcher reads the flag after the launch and raises the shared kernels' IndexError.  A
// negative index counts from the end.  Moves are instantiated per element width B (an
// unsigned integer of 1, 2, 4 or 8 bytes); ScatterND's reductions per element type T.

__device__ __forceinline__ void report_bad_index(long long* bad, long long index, i64 dim) {
    bad[0] = 1;        // several threads may write: any one offending index is reported
    bad[1] = index;
    bad[2] = dim;
}

// The index `v` into a dim of `dim` elements, wrapped from the end when negative; -1 (and
// the flag raised) when it is out of range.
__device__ __forceinline__ i64 wrap_index(long long v, i64 dim, long long* bad) {
    const i64 w = v < 0 ? v + dim : v;
    if (w < 0 || w >= dim) {
        report_bad_index(bad, v, dim);
        return -1;
    }
    return w;
}

// Gather along one axis: data viewed as (outer, axis_len, inner), indices flat (count
// values, int64 when wide_indices else int32), out (outer, count, inner).  I: int when
// every offset fits in 31 bits.
template <typename B, typename I>
__global__ void gather_axis(const B* __restrict__ data, const void* __restrict__ indices, B* __restrict__ out,
                            i64 n, i64 axis_len, i64 count, i64 inner, int wide_indices, long long* bad) {
    const I in_ = static_cast<I>(inner);
    const I count_ = static_cast<I>(count);
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const I li = static_cast<I>(i);
        const I rest = li / in_;
        const I within = li - rest * in_;
        const I o = rest / count_;
        const I j = rest - o * count_;
        const long long v = wide_indices ? static_cast<const long long*>(indices)[j]
                                         : static_cast<long long>(static_cast<const int*>(indices)[j]);
        const i64 k = wrap_index(v, axis_len, bad);
        out[i] = k < 0 ? B(0) : data[(o * static_cast<I>(axis_len) + static_cast<I>(k)) * in_ + within];
    }
}

// The k leading dims an index tuple addresses (GatherND after its batch dims, ScatterND):
// their sizes and their strides in elements.  All 64-bit, no padding (host: a NumPy
// structured array of int64 fields in this order).
struct IndexedDims {
    i64 k;
    i64 dim[ORTGPU_MAX_DIMS];
    i64 stride[ORTGPU_MAX_DIMS];
};

// Offset of the slice that the index tuple `tuple` (k values) addresses, or -1 (flag raised)
// when one of its values is out of range.
__device__ __forceinline__ i64 tuple_offset(const long long* tuple, const IndexedDims& d, long long* bad) {
    i64 offset = 0;
#pragma unroll
    for (int j = 0; j < ORTGPU_MAX_DIMS; ++j) {
        if (j < d.k) {
            const i64 w = wrap_index(tuple[j], d.dim[j], bad);
            if (w < 0) return -1;
            offset += w * d.stride[j];
        }
    }
    return offset;
}

// GatherND: indices viewed as (batch, count, k), out as (batch, count, slice); data's
// batches lie batch_stride elements apart.
template <typename B>
__global__ void gather_nd(const B* __restrict__ data, const long long* __restrict__ indices, B* __restrict__ out,
                          i64 n, i64 count, i64 slice, i64 batch_stride, IndexedDims d, long long* bad) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const i64 row = i / slice;           // (batch, count) flattened
        const i64 s = i - row * slice;
        const i64 offset = tuple_offset(indices + row * d.k, d, bad);
        out[i] = offset < 0 ? B(0) : data[(row / count) * batch_stride + offset + s];
    }
}

// ScatterND without reduction: out (a copy of data) gets updates, viewed as (count, slice),
// at the slices the index tuples address.  With duplicate tuples, which update lands is
// unspecified (as in the ONNX spec and onnxruntime's CUDA kernel).
template <typename B>
__global__ void scatter_nd_assign(B* __restrict__ out, const long long* __restrict__ indices,
                                  const B* __restrict__ updates, i64 n, i64 slice, IndexedDims d, long long* bad) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const i64 row = i / slice;
        const i64 offset = tuple_offset(indices + row * d.k, d, bad);
        if (offset >= 0) out[offset + (i - row * slice)] = updates[i];
    }
}

// ------------------------------------------------------------------ atomic read-modify-write

enum ScatterReduction { SCATTER_ADD = 1, SCATTER_MUL = 2, SCATTER_MAX = 3, SCATTER_MIN = 4 };

// U is unsigned int or unsigned long long (the widths atomicCAS takes); returns the old value.
template <typename U>
__device__ __forceinline__ U compare_and_swap(U* p, U expected, U desired) {
#ifdef ORTGPU_HOST_EMULATION
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
#else
    return atomicCAS(p, expected, desired);
#endif
}

// The bits of `v` read as type To (same size), through a union: nvcc and g++ both define it.
template <typename To, typename From>
__device__ __forceinline__ To reinterpret_bits(From v) {
    static_assert(sizeof(To) == sizeof(From), "reinterpret_bits: sizes differ");
    union {
        From from;
        To to;
    } u;
    u.from = v;
    return u.to;
}

template <int N> struct Word;   // the unsigned integer of N bytes
template <> struct Word<4> { typedef unsigned int type; };
template <> struct Word<8> { typedef unsigned long long type; };

// a (op) b in the compute type, stored back: integers wrap, Max/Min propagate NaN, float16
// rounds after each update (as NumPy's ufunc.at on a float16 array).
template <typename T>
__device__ __forceinline__ T scatter_combine(T a, T b, int reduction) {
    typedef typename Compute<T>::type C;
    const C x = load(a), y = load(b);
    C r;
    if (reduction == SCATTER_MAX) {
        r = max_nan(x, y);
    } else if (reduction == SCATTER_MIN) {
        r = min_nan(x, y);
    } else if constexpr (IsFloat<T>::value) {
        r = reduction == SCATTER_ADD ? x + y : x * y;
    } else {
        typedef typename Wrapping<C>::type U;
        r = static_cast<C>(reduction == SCATTER_ADD ? static_cast<U>(x) + static_cast<U>(y)
                                                    : static_cast<U>(x) * static_cast<U>(y));
    }
    return store<T>(r);
}

// *p = *p (op) v, atomically: a compare-and-swap loop on the 4- or 8-byte word holding *p
// (for 2-byte types, the aligned 4-byte word containing it).
template <typename T>
__device__ void atomic_combine(T* p, T v, int reduction) {
    if constexpr (sizeof(T) == 8 || sizeof(T) == 4) {
        typedef typename Word<sizeof(T)>::type W;
        W* word = reinterpret_cast<W*>(p);
        W old = *word, assumed;
        do {
            assumed = old;
            const T next = scatter_combine(reinterpret_bits<T>(assumed), v, reduction);
            old = compare_and_swap(word, assumed, reinterpret_bits<W>(next));
        } while (old != assumed);
    } else {
        static_assert(sizeof(T) == 2, "atomic_combine: 2, 4 or 8 byte elements");
        const unsigned long long address = reinterpret_cast<unsigned long long>(p);
        unsigned int* word = reinterpret_cast<unsigned int*>(address & ~3ULL);
        const unsigned int shift = (address & 2ULL) ? 16u : 0u;
        unsigned int old = *word, assumed;
        do {
            assumed = old;
            const unsigned short bits = static_cast<unsigned short>((assumed >> shift) & 0xffffu);
            const T next = scatter_combine(reinterpret_bits<T>(bits), v, reduction);
            const unsigned short next_bits = reinterpret_bits<unsigned short>(next);
            const unsigned int desired = (assumed & ~(0xffffu << shift)) | (static_cast<unsigned int>(next_bits) << shift);
            old = compare_and_swap(word, assumed, desired);
        } while (old != assumed);
    }
}

// ScatterND with reduction add / mul / max / min (a ScatterReduction code).  Duplicate
// tuples are all applied, in an unspecified order: integer results and Max/Min are exact,
// float Add/Mul may differ from the sequential order by rounding.
template <typename T>
__global__ void scatter_nd_reduce(T* __restrict__ out, const long long* __restrict__ indices,
                                  const T* __restrict__ updates, i64 n, i64 slice, IndexedDims d,
                                  int reduction, long long* bad) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const i64 row = i / slice;
        const i64 offset = tuple_offset(indices + row * d.k, d, bad);
        if (offset >= 0) atomic_combine(out + offset + (i - row * slice), updates[i], reduction);
    }
}
