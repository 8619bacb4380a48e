// Resize of the last two axes (H, W) of a contiguous tensor seen as planes of (in_h, in_w)
// (launcher: resize.py).  The host computes, per axis, which input positions feed each
// output position and with which weights (providers/kernels/resize.py's axis_table), so
// every coordinate transformation and rounding mode of the shared kernel is covered; the
// kernels only gather and weigh.  A first index of -1 marks an output row or column outside
// tf_crop_and_resize's region: it gets `fill` (extrapolation_value).

// Nearest: out[p][y][x] = in[p][yidx[y]][xidx[x]]; moves elements of width B.
template <typename B>
__global__ void resize_nearest(const B* __restrict__ in, B* __restrict__ out, i64 n, i64 in_h, i64 in_w,
                               i64 out_h, i64 out_w, const long long* __restrict__ yidx,
                               const long long* __restrict__ xidx, B fill) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const auto [p, y, x] = plane_yx(i, out_h, out_w);
        const i64 iy = yidx[y], ix = xidx[x];
        out[i] = (iy < 0 || ix < 0) ? fill : in[(p * in_h + iy) * in_w + ix];
    }
}

// Weighted taps (linear, cubic, antialiased): along H first, then W, as the shared kernel
// resamples one axis after the other:
//   out[p][y][x] = sum_b wx[x][b] * (sum_a wy[y][a] * in[p][yidx[y][a]][xidx[x][b]])
// with the tables (out_h, ytaps) and (out_w, xtaps) row-major, weights in the compute type.
template <typename T>
__global__ void resize_taps(const T* __restrict__ in, T* __restrict__ out, i64 n, i64 in_h, i64 in_w,
                            i64 out_h, i64 out_w,
                            const long long* __restrict__ yidx, const typename Compute<T>::type* __restrict__ yw, int ytaps,
                            const long long* __restrict__ xidx, const typename Compute<T>::type* __restrict__ xw, int xtaps,
                            typename Compute<T>::type fill) {
    typedef typename Compute<T>::type C;
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const auto [p, y, x] = plane_yx(i, out_h, out_w);
        const long long* ys = yidx + y * ytaps;
        const long long* xs = xidx + x * xtaps;
        if (ys[0] < 0 || xs[0] < 0) {
            out[i] = store<T>(fill);
            continue;
        }
        const T* plane = in + p * in_h * in_w;
        C acc = C(0);
        #pragma unroll 1
        for (int b = 0; b < xtaps; ++b) {
            C column = C(0);
            #pragma unroll 1
            for (int a = 0; a < ytaps; ++a) {
                column += yw[y * ytaps + a] * load(plane[ys[a] * in_w + xs[b]]);
            }
            acc += xw[x * xtaps + b] * column;
        }
        out[i] = store<T>(acc);
    }
}
