// RoiAlign over NCHW input: one thread per output element (roi, channel, bin row, bin col).
//
// The same arithmetic as providers/kernels/detection.py: box corners scaled and shifted in
// double, `grid` samples per bin along each axis (sampling_ratio, or ceil(roi size / bins)),
// each sample bilinear between its two neighbours per axis with the clamping rules of
// onnxruntime; "avg" averages the weighted corners over the samples, "max" takes the largest
// weighted corner.  Weights are rounded to the compute type before use, as the shared kernel
// rounds them.  Batch indices are checked by the launcher before the launch.

__device__ __forceinline__ void axis_sample(double pos, int size, int& low, int& high,
                                            double& w_low, double& w_high) {
    const bool outside = pos < -1.0 || pos > static_cast<double>(size);
    if (pos < 0.0) pos = 0.0;
    low = static_cast<int>(floor(pos));
    if (low >= size - 1) {
        low = size - 1;
        high = size - 1;
        pos = static_cast<double>(low);
    } else {
        high = low + 1;
    }
    const double frac = pos - low;
    w_low = outside ? 0.0 : 1.0 - frac;
    w_high = outside ? 0.0 : frac;
}

template <typename T>
__global__ void roi_align(const T* __restrict__ x, const T* __restrict__ rois,
                          const long long* __restrict__ batch, T* __restrict__ out, i64 n,
                          i64 images, int channels, int height, int width, int out_h, int out_w,
                          double scale, int half_pixel, int sampling_ratio, int use_max) {
    typedef typename Compute<T>::type C;
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        const int px = static_cast<int>(i % out_w);
        const int py = static_cast<int>((i / out_w) % out_h);
        const int c = static_cast<int>((i / (static_cast<i64>(out_w) * out_h)) % channels);
        const i64 r = i / (static_cast<i64>(out_w) * out_h * channels);
        const double offset = half_pixel ? 0.5 : 0.0;
        const double x1 = static_cast<double>(load(rois[r * 4 + 0])) * scale - offset;
        const double y1 = static_cast<double>(load(rois[r * 4 + 1])) * scale - offset;
        const double x2 = static_cast<double>(load(rois[r * 4 + 2])) * scale - offset;
        const double y2 = static_cast<double>(load(rois[r * 4 + 3])) * scale - offset;
        double roi_w = x2 - x1, roi_h = y2 - y1;
        if (!half_pixel) {
            roi_w = roi_w > 1.0 ? roi_w : 1.0;
            roi_h = roi_h > 1.0 ? roi_h : 1.0;
        }
        const double bin_h = roi_h / out_h, bin_w = roi_w / out_w;
        const int gh = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(roi_h / out_h));
        const int gw = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(roi_w / out_w));
        const i64 b = batch[r];
        if (gh <= 0 || gw <= 0 || b < 0 || b >= images) {  // a bad batch index: flagged by the launcher, never read
            out[i] = store<T>(C(0));
            continue;
        }
        const T* img = x + (b * channels + c) * static_cast<i64>(height) * width;
        C acc = use_max ? neg_infinity<C>() : C(0);
        for (int iy = 0; iy < gh; ++iy) {
            int ylo, yhi;
            double wylo_d, wyhi_d;
            axis_sample(y1 + py * bin_h + (iy + 0.5) * bin_h / gh, height, ylo, yhi, wylo_d, wyhi_d);
            const C wy[2] = {static_cast<C>(wylo_d), static_cast<C>(wyhi_d)};
            const int yy[2] = {ylo, yhi};
            for (int ix = 0; ix < gw; ++ix) {
                int xlo, xhi;
                double wxlo_d, wxhi_d;
                axis_sample(x1 + px * bin_w + (ix + 0.5) * bin_w / gw, width, xlo, xhi, wxlo_d, wxhi_d);
                const C wx[2] = {static_cast<C>(wxlo_d), static_cast<C>(wxhi_d)};
                const int xx[2] = {xlo, xhi};
                C sum = C(0);
                for (int a = 0; a < 2; ++a) {
                    for (int b = 0; b < 2; ++b) {
                        const C term = load(img[static_cast<i64>(yy[a]) * width + xx[b]]) * (wy[a] * wx[b]);
                        if (use_max) {
                            acc = max_nan(acc, term);
                        } else {
                            sum += term;
                        }
                    }
                }
                if (!use_max) acc += sum;
            }
        }
        out[i] = store<T>(use_max ? acc : acc / static_cast<C>(gh * gw));
    }
}
