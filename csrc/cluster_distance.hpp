// Pairwise distance matrices of one clustering problem (cosine or euclidean), from the tiled
// kernels in cluster_kernels.hpp.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "cluster_kernels.hpp"

namespace neuronscope::cluster {

// cosine:    1 - cos(a, b), clamped to [0, 2]. A zero vector is at distance 1 from every non-zero
//            vector and 0 from another zero vector (a vector whose squared norm underflows float32
//            counts as zero). Identical vectors are at distance exactly 0.
// euclidean: ||a - b||_2, accumulated from differences (no cancellation; identical vectors -> 0).
enum class Metric { cosine, euclidean };
Metric parse_metric(const std::string& name);  // throws std::invalid_argument
const char* metric_name(Metric metric);

// Where a problem's rows live in the caller's batch, for error messages only.
struct RowContext {
  std::size_t problem = 0;
  std::size_t first_row = 0;
};

// Grow-only scratch buffers, one per worker thread.
struct DistanceWorkspace {
  std::vector<float> a32, b32, c32;
  std::vector<double> a64, b64, c64, inv, half;
  std::vector<unsigned char> zero;
};

// Writes the full symmetric n x n distance matrix of the rows of x (n x dim, row-major) to
// dist (row stride ld >= n), with a zero diagonal. With f64 the products are accumulated in double
// (products of float32 values are exact in double); otherwise in float32, the fast path.
// Throws std::invalid_argument naming the row if a row is not finite or its products overflow.
void distance_matrix(const float* x, std::size_t n, std::size_t dim, Metric metric, bool f64, Simd simd,
                     DistanceWorkspace& ws, double* dist, std::size_t ld, const RowContext& where);

// Throws std::invalid_argument with a message naming the first non-finite value of the given
// rows, if any (used when a kernel reports a non-finite result).
void check_rows_finite(const float* x, std::size_t n, std::size_t dim, const RowContext& where);

}  // namespace neuronscope::cluster
