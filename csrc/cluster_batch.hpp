// Batched clustering over B independent problems given as a ragged batch: the points of problem b
// are rows offsets[b] .. offsets[b + 1] - 1 of one float32 feature matrix. Problems run in
// parallel on a std::thread pool; results are identical for any thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cluster_distance.hpp"

namespace neuronscope::cluster {

struct BatchView {
  const float* features = nullptr;  // (n_points, dim) row-major
  std::size_t n_points = 0;
  std::size_t dim = 0;
  const std::int64_t* offsets = nullptr;  // (n_problems + 1), 0 = offsets[0] <= ... <= offsets[B] = n_points
  std::size_t n_problems = 0;
  const float* weights = nullptr;  // (n_points) finite and > 0, or null
};

// Checks offsets, dim and weights (feature values are checked while each problem is processed).
// Throws std::invalid_argument naming the argument.
void validate_batch(const BatchView& batch);

// Largest problem average linkage accepts: its n x n double matrices (up to 1.5 GB per thread at
// this size) are the limit; larger problems belong to k-means.
constexpr std::size_t kMaxLinkagePoints = 8192;

enum class Criterion { distance, maxclust, automatic };

struct HierarchicalOptions {
  Metric metric = Metric::cosine;
  bool f64 = false;  // accumulate distances in double (exact ties, slower)
  Criterion criterion = Criterion::automatic;
  double threshold = 0.0;        // distance: cut height
  std::size_t n_clusters = 2;    // maxclust: at most this many clusters
  std::size_t max_clusters = 8;  // automatic: candidates k = 2 .. max_clusters
  double min_silhouette = 0.25;  // automatic: below this, one cluster
  int threads = 0;               // <= 0: all hardware threads
};

struct HierarchicalResult {
  std::vector<std::int32_t> labels;           // (n_points) 0 .. n_clusters[b] - 1, by first appearance
  std::vector<std::int32_t> n_clusters;       // (B)
  std::vector<double> silhouette;             // (B) automatic only, NaN otherwise / for one cluster
  std::vector<double> linkage;                // (sum_b max(n_b - 1, 0), 4) scipy format per problem
  std::vector<std::int64_t> linkage_offsets;  // (B + 1) row offsets into linkage
};

HierarchicalResult hierarchical_batch(const BatchView& batch, const HierarchicalOptions& options);

struct CutResult {
  std::vector<std::int32_t> labels;
  std::vector<std::int32_t> n_clusters;
};

// Flat cuts of precomputed linkages (rows laid out as in HierarchicalResult); criterion distance
// or maxclust. Validates every linkage first.
CutResult cut_batch(const double* linkage, std::size_t n_rows, const std::int64_t* offsets, std::size_t n_problems,
                    Criterion criterion, double threshold, std::size_t n_clusters, int threads);

// Mean silhouette per problem; labels are any int64 values (each distinct value is a cluster).
std::vector<double> silhouette_batch(const BatchView& batch, const std::int64_t* labels, Metric metric, bool f64,
                                     int threads);

// Condensed pairwise distances (scipy's pdist order) of every problem, concatenated.
std::vector<double> pdist_batch(const BatchView& batch, Metric metric, bool f64, int threads);

struct KMeansBatchOptions {
  Metric metric = Metric::euclidean;  // cosine: k-means of the L2-normalised points
  std::size_t k = 8;
  int n_init = 3;
  int max_iter = 100;
  double tol = 1e-4;
  std::uint64_t seed = 0;
  int threads = 0;
  const float* init = nullptr;  // (B, k, dim) starting centres, or null for k-means++
};

struct KMeansBatchResult {
  std::vector<std::int32_t> labels;  // (n_points)
  std::vector<float> centroids;      // (B, k, dim); rows past min(k, n_b) are NaN
  std::vector<double> inertia;       // (B)
  std::vector<std::int32_t> n_iter;  // (B)
};

KMeansBatchResult kmeans_batch(const BatchView& batch, const KMeansBatchOptions& options);

}  // namespace neuronscope::cluster
