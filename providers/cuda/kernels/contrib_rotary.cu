// RotaryEmbedding (com.microsoft), as providers/kernels/contrib_attention.py: the first
// rotary_dim features of each head are rotated by the cos/sin cache rows of the token's
// position, the rest copied.  Non-interleaved pairs feature j with j + rotary_dim / 2,
// interleaved pairs 2i with 2i + 1; cos/sin have rotary_dim / 2 columns.
//
// x and y share a layout: element (b, s, n, d) at b * stride_b + s * stride_s + n * stride_n + d
// ((B, S, N*D) and (B, N, S, D) inputs differ only in these strides).  pos holds one int64
// position per (b, s), already checked to lie inside the caches.  Arithmetic in the compute
// type (float32 for float16), one rounding.
//
// Launch: grid-stride, one thread per element of x (module.launch_elementwise).

template <typename T>
__global__ void rotary_embedding(const T* __restrict__ x, const long long* __restrict__ pos,
                                 const T* __restrict__ cos_cache, const T* __restrict__ sin_cache,
                                 T* __restrict__ y, i64 batch, i64 seq, i64 heads, i64 head_size,
                                 i64 stride_b, i64 stride_s, i64 stride_n, i64 rotary_dim,
                                 int interleaved) {
    typedef typename Compute<T>::type C;
    const i64 n_total = batch * seq * heads * head_size;
    const i64 half = rotary_dim / 2;
    for (i64 i = grid_start(); i < n_total; i += grid_step()) {
        const Index4 ix = unflatten4(i, seq, heads, head_size);
        const i64 b = ix.i0, s = ix.i1, n = ix.i2, d = ix.i3;
        const i64 base = b * stride_b + s * stride_s + n * stride_n;
        if (d >= rotary_dim) {
            y[base + d] = x[base + d];
            continue;
        }
        i64 k, partner;
        bool first;
        if (interleaved) {
            k = d / 2;
            first = (d % 2) == 0;
            partner = first ? d + 1 : d - 1;
        } else {
            first = d < half;
            k = first ? d : d - half;
            partner = first ? d + half : d - half;
        }
        const i64 row = pos[b * seq + s] * half + k;
        const C c = load(cos_cache[row]), sn = load(sin_cache[row]);
        const C v = load(x[base + d]), p = load(x[base + partner]);
        // first of a pair: v * cos - partner * sin; second: partner * sin + v * cos
        y[base + d] = store<T>(first ? c * v - sn * p : sn * p + c * v);
    }
}
