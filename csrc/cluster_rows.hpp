// Row primitives of the distance matrix and of the nearest-neighbour-chain linkage, with runtime
// SIMD dispatch. Compiled without floating-point contraction: every result is rounded operation
// by operation, identically on every kernel family.
#pragma once

#include <cstddef>

#include "cluster_kernels.hpp"

namespace neuronscope::cluster {

// Smallest row[i] + penalty[i] over i in [begin, end) and, in *index, the first i reaching it
// (end - begin a multiple of 8). Entries are never NaN.
double masked_argmin(Simd simd, const double* row, const double* penalty, std::size_t begin, std::size_t end,
                     std::size_t* index);

// ry[i] = (nx * rx[i] + ny * ry[i]) / (nx + ny) for i in [begin, end) (end - begin a multiple of 8),
// rounded operation by operation (never fused), so that it matches scipy bit for bit.
void average_rows(Simd simd, double* ry, const double* rx, double nx, double ny, std::size_t begin,
                  std::size_t end);

// Cosine distances of row i from its Gram row g: out[j] = clamp(half_i + half[j] -
// (g[j] * inv_i) * inv[j], 0, 2) for j in [begin, end) (see cluster_distance.cpp).
void cosine_row(Simd simd, const float* g, const double* half, const double* inv, double half_i, double inv_i,
                double* out, std::size_t begin, std::size_t end);
void cosine_row(Simd simd, const double* g, const double* half, const double* inv, double half_i, double inv_i,
                double* out, std::size_t begin, std::size_t end);

// Copies the strict upper triangle of the n x n matrix dist (row stride ld) onto the lower one.
void mirror_upper(Simd simd, std::size_t n, double* dist, std::size_t ld);

}  // namespace neuronscope::cluster
