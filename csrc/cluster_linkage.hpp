// Average-linkage (UPGMA) agglomerative clustering of one problem, and flat cuts of its tree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cluster_kernels.hpp"

namespace neuronscope::cluster {

struct LinkageWorkspace {
  std::vector<double> penalty, size, raw, md, sorted;
  std::vector<std::int64_t> count;
  std::vector<int> chain, order, parent, rep, root_label, live, where;
};

// Average linkage by nearest-neighbour chain, O(n^2) time, on the full symmetric distance matrix
// dist (n rows, row stride ld, ld a multiple of 8, entries of columns [n, ld) finite; destroyed).
// simd selects the row kernels (results are identical for every choice).
// weights (nullable) are point multiplicities: a point of weight w counts as w copies in every
// average. Writes the n - 1 merges to z (row-major (n - 1) x 4) in scipy's linkage format:
// [cluster a, cluster b, height, number of points], a < b, clusters n + i formed by row i, rows
// sorted by height. The chain search, its tie-breaking (lowest index first, strict comparisons),
// the Lance-Williams update and the final stable sort follow scipy.cluster.hierarchy.linkage(
// method="average"), so the same distances give the same tree, ties included.
void average_linkage(Simd simd, double* dist, std::size_t ld, std::size_t n, const float* weights, double* z,
                     LinkageWorkspace& ws);

// Throws std::invalid_argument unless z (n - 1 rows) is a valid linkage matrix: finite heights,
// integral cluster ids, each id in [0, n + row) and used at most once.
void validate_linkage(const double* z, std::size_t n, std::size_t problem);

// Flat clusters as scipy.cluster.hierarchy.fcluster(z, t, "distance"): points joined by merges
// whose subtree height (max over the subtree, which guards against rounding inversions) is <= t.
// labels: n int32, numbered 0, 1, ... in order of first appearance. Returns the cluster count.
int cut_distance(const double* z, std::size_t n, double t, std::int32_t* labels, LinkageWorkspace& ws);

// As fcluster(z, k, "maxclust"): the lowest cut with at most k clusters. Merges tied at the cut
// height fall on the same side, so fewer than k clusters can come out (k >= n: singletons).
int cut_maxclust(const double* z, std::size_t n, std::size_t k, std::int32_t* labels, LinkageWorkspace& ws);

}  // namespace neuronscope::cluster
