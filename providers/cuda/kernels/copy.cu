// Copies between layouts: the one data-movement kernel behind Transpose, Concat, Split and
// Slice (launcher: copy.py), plus a tiled transpose for swapping the last two dims.
//
// They only move elements, so they are instantiated per element size: B is an unsigned
// integer of the element's width (1, 2, 4 or 8 bytes), as in where.cu.

// Both sides contiguous: out[i] = in[i].
template <typename B>
__global__ void copy_flat(const B* __restrict__ in, B* __restrict__ out, i64 n) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        out[i] = in[i];
    }
}

// Any two views of one shape: operand 0 of `bc` is the input, operand 1 the output; their
// element strides may be negative (a reversed slice) or 0 (never for the output).  I is the
// index type (int when every offset fits in 31 bits).
template <typename B, typename I>
__global__ void strided_copy(const B* __restrict__ in, B* __restrict__ out, i64 n, Broadcast bc) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        I offset[2];
        broadcast_offsets<I, 2>(bc, static_cast<I>(i), offset);
        out[offset[1]] = in[offset[0]];
    }
}

#define ORTGPU_TILE 32

// out[b][c][r] = in[b][r][c] for contiguous (batch, rows, cols) in and (batch, cols, rows)
// out.  Each block moves 32 x 32 tiles through shared memory (one column of padding keeps
// the column reads free of bank conflicts), so both global reads and writes are coalesced.
// Launch: blockDim (32, 8); any grid (blocks loop over the tiles).
template <typename B>
__global__ void transpose_tiles(const B* __restrict__ in, B* __restrict__ out,
                                i64 batch, i64 rows, i64 cols) {
    __shared__ B tile[ORTGPU_TILE][ORTGPU_TILE + 1];
    const i64 tile_rows = (rows + ORTGPU_TILE - 1) / ORTGPU_TILE;
    const i64 tile_cols = (cols + ORTGPU_TILE - 1) / ORTGPU_TILE;
    const i64 per_matrix = tile_rows * tile_cols;
    const i64 tiles = batch * per_matrix;
    for (i64 t = blockIdx.x; t < tiles; t += gridDim.x) {
        const i64 b = t / per_matrix;
        const i64 within = t - b * per_matrix;
        const i64 r0 = (within / tile_cols) * ORTGPU_TILE;
        const i64 c0 = (within % tile_cols) * ORTGPU_TILE;
        const B* src = in + b * rows * cols;
        B* dst = out + b * rows * cols;
        for (int dy = threadIdx.y; dy < ORTGPU_TILE; dy += blockDim.y) {
            const i64 r = r0 + dy;
            const i64 c = c0 + threadIdx.x;
            if (r < rows && c < cols) tile[dy][threadIdx.x] = src[r * cols + c];
        }
        __syncthreads();
        for (int dy = threadIdx.y; dy < ORTGPU_TILE; dy += blockDim.y) {
            const i64 c = c0 + dy;
            const i64 r = r0 + threadIdx.x;
            if (r < rows && c < cols) dst[c * rows + r] = tile[threadIdx.x][dy];
        }
        __syncthreads();   // the tile is read by everyone before the next one is written
    }
}
