// Weighted k-means of one problem: greedy k-means++ seeding, Lloyd iterations, restarts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cluster_kernels.hpp"

namespace neuronscope::cluster {

struct KMeansOptions {
  std::size_t k = 8;        // clusters; a problem with fewer points gets one cluster per point
  int n_init = 3;           // restarts (k-means++ seeds); the lowest inertia wins
  int max_iter = 100;       // Lloyd iterations per restart
  double tol = 1e-4;        // stop when the squared centre shift <= tol * mean feature variance
  std::uint64_t seed = 0;   // with the problem index, fixes every random draw
  Simd simd = Simd::generic;
  int threads = 1;          // threads inside the problem (chunks of points)
};

struct KMeansWorkspace {
  std::vector<float> points, center_panels;
  std::vector<double> point_norms, center_norms, centers, next_centers, best_centers;
  std::vector<double> partial, closest, trial, cumulative;
  std::vector<std::int32_t> labels, best_labels;
  std::vector<std::vector<float>> tiles;  // one per thread
  std::vector<std::size_t> changed;
};

struct KMeansProblemResult {
  double inertia = 0.0;  // sum_i w_i ||x_i - c(x_i)||^2, in double
  int n_iter = 0;        // Lloyd iterations of the winning restart
};

// Clusters the n points x (n x dim, row-major) with weights w (nullable: all 1; else > 0) into
// k_eff = min(k, n) clusters. init (nullable) gives the k_eff x dim starting centres, in which
// case there is a single run. Writes labels (n int32) and centroids (k_eff x dim). Deterministic:
// the random stream depends on (options.seed, stream) only, and chunk results are reduced in a
// fixed order whatever the thread count.
KMeansProblemResult kmeans_problem(const float* x, std::size_t n, std::size_t dim, const float* w,
                                   const float* init, const KMeansOptions& options, std::uint64_t stream,
                                   KMeansWorkspace& ws, std::int32_t* labels, float* centroids);

}  // namespace neuronscope::cluster
