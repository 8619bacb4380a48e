// 2-D pooling of a contiguous NCHW tensor seen as planes of (in_h, in_w) (launcher: pool.py).
//
// One thread per output element walks its window: position (iy, ix) of window (oy, ox) is
// iy = oy * stride - begin + ky * dilation.  Positions outside the input are padding:
// MaxPool skips them (the shared kernel pads with the lowest value, which never wins);
// AveragePool divides by the positions inside the input, or with count_include_pad by those
// inside the explicitly padded input (never the extra end ceil_mode adds), at least 1.
// MaxPool propagates NaN (as NumPy's maximum); averages sum in the compute type.

enum PoolKind { POOL_MAX = 0, POOL_AVERAGE = 1, POOL_AVERAGE_INCLUDE_PAD = 2 };

// Window geometry per spatial axis (0 = H, 1 = W); all 64-bit, no padding (host: a NumPy
// structured array of int64 fields in this order).
struct PoolWindow {
    i64 kernel[2];
    i64 stride[2];
    i64 dilation[2];
    i64 begin[2];   // explicit pads before
    i64 end[2];     // explicit pads after
};

template <typename T>
__global__ void pool2d(const T* __restrict__ x, T* __restrict__ y, i64 n, i64 in_h, i64 in_w,
                       i64 out_h, i64 out_w, PoolWindow w, int kind) {
    typedef typename Compute<T>::type C;
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const auto [p, oy, ox] = plane_yx(i, out_h, out_w);
        const T* plane = x + p * in_h * in_w;
        const i64 y0 = oy * w.stride[0] - w.begin[0];
        const i64 x0 = ox * w.stride[1] - w.begin[1];
        if (kind == POOL_MAX) {
            C best = Limits<C>::lowest();
            #pragma unroll 1
            for (i64 ky = 0; ky < w.kernel[0]; ++ky) {
                const i64 iy = y0 + ky * w.dilation[0];
                if (iy < 0 || iy >= in_h) continue;
                #pragma unroll 1
                for (i64 kx = 0; kx < w.kernel[1]; ++kx) {
                    const i64 ix = x0 + kx * w.dilation[1];
                    if (ix < 0 || ix >= in_w) continue;
                    best = max_nan(best, load(plane[iy * in_w + ix]));
                }
            }
            y[i] = store<T>(best);
        } else {
            const bool include_pad = kind == POOL_AVERAGE_INCLUDE_PAD;
            C sum = C(0);
            i64 count = 0;
            #pragma unroll 1
            for (i64 ky = 0; ky < w.kernel[0]; ++ky) {
                const i64 iy = y0 + ky * w.dilation[0];
                const bool row_in = iy >= 0 && iy < in_h;
                const bool row_counts = include_pad ? (iy >= -w.begin[0] && iy < in_h + w.end[0]) : row_in;
                #pragma unroll 1
                for (i64 kx = 0; kx < w.kernel[1]; ++kx) {
                    const i64 ix = x0 + kx * w.dilation[1];
                    const bool in = row_in && ix >= 0 && ix < in_w;
                    if (in) sum += load(plane[iy * in_w + ix]);
                    if (include_pad ? (row_counts && ix >= -w.begin[1] && ix < in_w + w.end[1]) : in) ++count;
                }
            }
            y[i] = store<T>(sum / static_cast<C>(count > 0 ? count : 1));
        }
    }
}
