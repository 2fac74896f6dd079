// Packing of row-major points into the k-major panels the tile kernels read.
#pragma once

#include <cstddef>

#include "cluster_kernels.hpp"

namespace neuronscope::cluster {

// Packs n rows (row-major, row stride ld, k columns) into panels of `width` rows, k-major inside
// a panel: out[p * width * k + c * width + r] = rows[p * width + r][c]. Rows past n are zero.
// out must hold round_up(n, width) * k elements. With narrow_out, the same rows are also packed
// as panels of narrow_width rows (which must divide width); narrow_out must also hold
// round_up(n, width) * k elements.
void pack_panels(Simd simd, const float* rows, std::size_t ld, std::size_t n, std::size_t k, int width, float* out,
                 int narrow_width = 0, float* narrow_out = nullptr);
void pack_panels(Simd simd, const float* rows, std::size_t ld, std::size_t n, std::size_t k, int width,
                 double* out, int narrow_width = 0, double* narrow_out = nullptr);

}  // namespace neuronscope::cluster
