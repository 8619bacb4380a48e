// Where: out = condition ? x : y with broadcasting of all three.
//
// The kernel only moves elements, so it is instantiated per element size, not per type:
// B is an unsigned integer of the element's width (1, 2, 4 or 8 bytes).

// Contiguous operands or scalar ones: steps are 0 (scalar) or 1.
template <typename B>
__global__ void where_flat(const bool* __restrict__ cond, const B* __restrict__ x,
                           const B* __restrict__ y, B* __restrict__ out, i64 n,
                           int cond_step, int x_step, int y_step) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        out[i] = cond[i * cond_step] ? x[i * x_step] : y[i * y_step];
    }
}

// General N-D broadcasting: operands 0, 1, 2 of `bc` are condition, x, y; out is contiguous.
template <typename B, typename I>
__global__ void where_bcast(const bool* __restrict__ cond, const B* __restrict__ x,
                            const B* __restrict__ y, B* __restrict__ out, i64 n, Broadcast bc) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        I offset[3];
        broadcast_offsets<I, 3>(bc, static_cast<I>(i), offset);
        out[i] = cond[offset[0]] ? x[offset[1]] : y[offset[2]];
    }
}
