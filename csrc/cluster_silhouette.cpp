#include "cluster_silhouette.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace neuronscope::cluster {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// sums[i * c + l] = sum of dist(i, j) over the points j with label l; sizes[l] = their count.
void cluster_sums(const double* dist, std::size_t ld, std::size_t n, const std::int32_t* labels, std::size_t c,
                  std::vector<double>& sums, std::vector<double>& sizes) {
  sums.assign(n * c, 0.0);
  sizes.assign(c, 0.0);
  for (std::size_t j = 0; j < n; ++j) sizes[static_cast<std::size_t>(labels[j])] += 1.0;
  // Four partial sums per cluster, so that consecutive points of one cluster do not wait on each
  // other's read-modify-write; combined in a fixed order.
  std::vector<double> part(4 * c);
  for (std::size_t i = 0; i < n; ++i) {
    const double* row = dist + i * ld;
    std::fill(part.begin(), part.end(), 0.0);
    std::size_t j = 0;
    for (; j + 4 <= n; j += 4)
      for (std::size_t q = 0; q < 4; ++q) part[q * c + static_cast<std::size_t>(labels[j + q])] += row[j + q];
    for (; j < n; ++j) part[static_cast<std::size_t>(labels[j])] += row[j];
    double* s = sums.data() + i * c;
    for (std::size_t l = 0; l < c; ++l) s[l] = (part[l] + part[c + l]) + (part[2 * c + l] + part[3 * c + l]);
  }
}

double mean_silhouette(const double* sums, const double* sizes, std::size_t n, const std::int32_t* labels,
                       std::size_t c) {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto own = static_cast<std::size_t>(labels[i]);
    if (sizes[own] <= 1.0) continue;  // singleton: s = 0
    const double* s = sums + i * c;
    const double a = s[own] / (sizes[own] - 1.0);
    double b = std::numeric_limits<double>::infinity();
    for (std::size_t l = 0; l < c; ++l)
      if (l != own) b = std::min(b, s[l] / sizes[l]);
    const double denom = std::max(a, b);
    if (denom > 0.0) total += (b - a) / denom;
  }
  return total / static_cast<double>(n);
}

}  // namespace

double silhouette(const double* dist, std::size_t ld, std::size_t n, const std::int32_t* labels, std::size_t c,
                  SilhouetteWorkspace& ws) {
  if (c < 2 || c + 1 > n) return kNaN;
  cluster_sums(dist, ld, n, labels, c, ws.sums, ws.sizes);
  return mean_silhouette(ws.sums.data(), ws.sizes.data(), n, labels, c);
}

AutoCut cut_auto(const double* z, const double* dist, std::size_t ld, std::size_t n, std::size_t max_clusters,
                 double min_silhouette, std::int32_t* labels, LinkageWorkspace& lws, SilhouetteWorkspace& sws) {
  const AutoCut single{1, kNaN};
  std::fill(labels, labels + n, 0);
  const std::size_t k_max = std::min(max_clusters, n == 0 ? 0 : n - 1);
  if (n < 3 || k_max < 2) return single;
  // The maxclust cuts are nested, so the distance sums to the clusters of the finest cut give
  // those of every coarser cut by addition: one O(n^2) pass instead of one per candidate.
  sws.fine.resize(n);
  const auto n_fine = static_cast<std::size_t>(cut_maxclust(z, n, k_max, sws.fine.data(), lws));
  if (n_fine < 2) return single;
  std::vector<double> fine_sums, fine_sizes;
  cluster_sums(dist, ld, n, sws.fine.data(), n_fine, fine_sums, fine_sizes);

  sws.current.resize(n);
  sws.to_coarse.resize(n_fine);
  double best = -std::numeric_limits<double>::infinity();
  int best_c = 0;
  std::size_t previous = 0;
  for (std::size_t k = 2; k <= k_max; ++k) {
    const auto c = static_cast<std::size_t>(cut_maxclust(z, n, k, sws.current.data(), lws));
    if (c == previous || c < 2) continue;  // same partition as the previous candidate
    previous = c;
    for (std::size_t i = 0; i < n; ++i) sws.to_coarse[static_cast<std::size_t>(sws.fine[i])] = sws.current[i];
    sws.coarse.assign(n * c, 0.0);
    sws.sizes.assign(c, 0.0);
    for (std::size_t f = 0; f < n_fine; ++f) sws.sizes[static_cast<std::size_t>(sws.to_coarse[f])] += fine_sizes[f];
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t f = 0; f < n_fine; ++f)
        sws.coarse[i * c + static_cast<std::size_t>(sws.to_coarse[f])] += fine_sums[i * n_fine + f];
    const double s = mean_silhouette(sws.coarse.data(), sws.sizes.data(), n, sws.current.data(), c);
    if (s > best) {
      best = s;
      best_c = static_cast<int>(c);
      std::copy(sws.current.begin(), sws.current.end(), labels);
    }
  }
  if (best_c == 0 || !(best >= min_silhouette)) {
    std::fill(labels, labels + n, 0);
    return single;
  }
  return AutoCut{best_c, best};
}

}  // namespace neuronscope::cluster
