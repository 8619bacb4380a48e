// GroupQueryAttention (com.microsoft) over a KV cache, as providers/kernels/contrib_attention.py.
//
// gqa_present: present (B, Nkv, P, D) = the first pasts[b] positions of past (B, Nkv, past_len, D)
//   (may be null when no position is kept), then the S new rows of kv (B, S, Nkv, D), then zeros.
//   Grid-stride over the present elements.
// gqa_attention_rows: one block per query row (b, n, i) of q (B, S, N, D): query head n reads kv
//   head n / (N / Nkv); its position is pasts[b] + i and it sees keys j with
//   max(0, pos - window + 1) <= j <= min(pos, lens[b] - 1) (window < 0: no lower bound).
//   score = q.k * scale, then softcap * tanh(score / softcap) when softcap > 0, softmax over the
//   kept keys (float32, max subtracted), y (B, S, N, D) = probabilities @ v.  The scores of a row
//   go through scores_ws (B*N*S, P) float32.  The launcher makes sure every row keeps a key.
//   Launch: grid (B * N * S), block (k * 32, 1).

template <typename T>
__global__ void gqa_present(const T* __restrict__ past, const T* __restrict__ kv, const long long* __restrict__ pasts,
                            T* __restrict__ present, i64 batch, i64 kv_heads, i64 present_len, i64 head_size,
                            i64 past_len, i64 seq) {
    const i64 total = batch * kv_heads * present_len * head_size;
    for (i64 e = grid_start(); e < total; e += grid_step()) {
        const Index4 ix = unflatten4(e, kv_heads, present_len, head_size);
        const i64 b = ix.i0, h = ix.i1, j = ix.i2, d = ix.i3;
        const i64 p = pasts[b];
        T v = store<T>(0.0f);
        if (j < p) v = past[((b * kv_heads + h) * past_len + j) * head_size + d];
        else if (j < p + seq) v = kv[((b * seq + (j - p)) * kv_heads + h) * head_size + d];
        present[e] = v;
    }
}

template <typename T>
__global__ void __launch_bounds__(1024) gqa_attention_rows(
        const T* __restrict__ q, const T* __restrict__ present_k, const T* __restrict__ present_v,
        const long long* __restrict__ pasts, const long long* __restrict__ lens, float* __restrict__ scores_ws,
        T* __restrict__ y, i64 seq, i64 heads, i64 kv_heads, i64 head_size, i64 present_len,
        float scale, float softcap, i64 window) {
    __shared__ float scratch[32];
    const i64 row = blockIdx.x;
    const i64 i = row % seq;
    const i64 n = (row / seq) % heads;
    const i64 b = row / (seq * heads);
    const i64 kvh = n / (heads / kv_heads);
    const i64 pos = pasts[b] + i;
    const i64 hi = pos < lens[b] - 1 ? pos : lens[b] - 1;
    i64 lo = window >= 0 ? pos - window + 1 : 0;
    if (lo < 0) lo = 0;
    const T* qr = q + ((b * seq + i) * heads + n) * head_size;
    const i64 kv_base = (b * kv_heads + kvh) * present_len * head_size;
    float* sr = scores_ws + row * present_len;

    float m = neg_infinity<float>();
    for (i64 j = lo + threadIdx.x; j <= hi; j += blockDim.x) {
        const T* kr = present_k + kv_base + j * head_size;
        float dot = 0.0f;
        for (i64 d = 0; d < head_size; ++d) dot += static_cast<float>(load(qr[d])) * static_cast<float>(load(kr[d]));
        float s = dot * scale;
        if (softcap > 0.0f) s = tanhf(s / softcap) * softcap;
        sr[j] = s;
        m = max_nan(m, s);
    }
    m = row_allreduce(m, MaxOp<float>(), neg_infinity<float>(), scratch);
    float sum = 0.0f;
    for (i64 j = lo + threadIdx.x; j <= hi; j += blockDim.x) {
        const float e = expf(sr[j] - m);
        sr[j] = e;
        sum += e;
    }
    sum = row_allreduce(sum, SumOp<float>(), 0.0f, scratch);
    __syncthreads();   // every thread's probabilities are written before anyone reads them
    const float inv = 1.0f / sum;
    T* yr = y + ((b * seq + i) * heads + n) * head_size;
    for (i64 d = threadIdx.x; d < head_size; d += blockDim.x) {
        float acc = 0.0f;
        for (i64 j = lo; j <= hi; ++j) acc += sr[j] * static_cast<float>(load(present_v[kv_base + j * head_size + d]));
        yr[d] = store<T>(acc * inv);
    }
}
