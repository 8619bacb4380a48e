// Cast between the element types CuPy holds, on contiguous tensors.
//
// C conversion semantics, as CuPy's astype on the device (see Convert in common.cuh):
// float to integer truncates toward zero (out-of-range values are undefined in ONNX),
// to bool tests != 0 (NaN is true), to float16 rounds to nearest even once.

template <typename S, typename D>
__global__ void cast_flat(const S* __restrict__ x, D* __restrict__ y, i64 n) {
    for (i64 i = grid_start(); i < n; i += grid_step()) {
        y[i] = Convert<D, S>::run(x[i]);
    }
}
