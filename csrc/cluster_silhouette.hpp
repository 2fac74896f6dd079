// Silhouette scores, and the automatic choice of the number of clusters from a linkage tree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cluster_linkage.hpp"

namespace neuronscope::cluster {

struct SilhouetteWorkspace {
  std::vector<double> sums, coarse, sizes;
  std::vector<std::int32_t> fine, current;
  std::vector<int> to_coarse;
};

// Mean silhouette over the n points (scikit-learn's silhouette_score): s_i = (b_i - a_i) /
// max(a_i, b_i), with s_i = 0 for points in singleton clusters and where a_i = b_i = 0. dist is the
// full n x n matrix (row stride ld, zero diagonal), labels take the values 0 .. c - 1, all used.
// Sums are accumulated in double. Returns NaN where the score is undefined (c < 2 or c > n - 1;
// scikit-learn raises there).
double silhouette(const double* dist, std::size_t ld, std::size_t n, const std::int32_t* labels, std::size_t c,
                  SilhouetteWorkspace& ws);

struct AutoCut {
  int n_clusters;
  double silhouette;  // of the returned partition; NaN for a single cluster
};

// Automatic cut of an average-linkage tree z (scipy format) built from dist. Candidates are the
// maxclust cuts k = 2 .. min(max_clusters, n - 1) (distinct partitions only); the one with the
// highest mean silhouette wins, ties going to fewer clusters. One cluster is the answer when no
// candidate reaches min_silhouette (by default 0.25, below which Kaufman & Rousseeuw find "no
// substantial structure"), when n < 3, or when every candidate has a single cluster (all points
// merge at one height). labels: n int32 numbered by first appearance.
AutoCut cut_auto(const double* z, const double* dist, std::size_t ld, std::size_t n, std::size_t max_clusters,
                 double min_silhouette, std::int32_t* labels, LinkageWorkspace& lws, SilhouetteWorkspace& sws);

}  // namespace neuronscope::cluster
