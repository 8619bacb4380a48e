// GroupNorm and SkipGroupNorm (com.microsoft) of an NHWC tensor, as
// providers/kernels/contrib_normalization.py: one block per (image, group) normalizes the
// hw * (c / groups) values s of the group, s = x (+ skip) (+ bias) in float32 (recomputed from
// the inputs in each pass), y = (s - mean) / sqrt(var + epsilon) * gamma[c] + beta[c], then
// y * sigmoid(y) when silu.  skip (may be null) is read at pixel p % skip_hw (skip_hw = hw for a
// full skip, 1 for an (N, 1, 1, C) or (N, C) one); bias (C,) and sum_out (the rounded s) may be
// null.  gamma/beta have their own type G (float32 with float16 activations is common).
//
// Launch: grid (N * groups), block (k * 32, 1).

template <typename T, typename G>
__global__ void __launch_bounds__(1024) group_norm_nhwc(
        const T* __restrict__ x, const T* __restrict__ skip, const T* __restrict__ bias,
        const G* __restrict__ gamma, const G* __restrict__ beta, T* __restrict__ y, T* __restrict__ sum_out,
        i64 hw, i64 channels, i64 groups, i64 skip_hw, float epsilon, int silu) {
    __shared__ float scratch[32];
    const i64 image = blockIdx.x / groups, group = blockIdx.x % groups;
    const i64 cpg = channels / groups;
    const i64 count = hw * cpg;
    const i64 base = image * hw * channels + group * cpg;
    const i64 skip_base = image * skip_hw * channels + group * cpg;

    // value j of the group: pixel j / cpg, channel group * cpg + j % cpg
    auto value = [&](i64 j, i64& offset) -> float {
        const i64 p = j / cpg, ch = j % cpg;
        offset = base + p * channels + ch;
        float v = static_cast<float>(load(x[offset]));
        if (skip != nullptr) v += static_cast<float>(load(skip[skip_base + (p % skip_hw) * channels + ch]));
        if (bias != nullptr) v += static_cast<float>(load(bias[group * cpg + ch]));
        return v;
    };

    i64 off;
    float s = 0.0f;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x) s += value(j, off);
    const float mean = row_allreduce(s, SumOp<float>(), 0.0f, scratch) / static_cast<float>(count);
    float ss = 0.0f;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
        const float d = value(j, off) - mean;
        ss += d * d;
    }
    const float var = row_allreduce(ss, SumOp<float>(), 0.0f, scratch) / static_cast<float>(count);
    const float inv = 1.0f / sqrtf(var + epsilon);
    for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
        const float v = value(j, off);
        const i64 ch = group * cpg + j % cpg;
        float r = (v - mean) * inv * static_cast<float>(load(gamma[ch])) + static_cast<float>(load(beta[ch]));
        if (silu) r = r >= 0.0f ? r / (1.0f + expf(-r)) : r * expf(r) / (1.0f + expf(r));
        y[off] = store<T>(r);
        if (sum_out != nullptr) sum_out[off] = store<T>(v);
    }
}
