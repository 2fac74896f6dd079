#include "cluster_batch.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "cluster_kmeans.hpp"
#include "cluster_linkage.hpp"
#include "cluster_parallel.hpp"
#include "cluster_silhouette.hpp"

namespace neuronscope::cluster {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::size_t problem_size(const BatchView& batch, std::size_t b) {
  return static_cast<std::size_t>(batch.offsets[b + 1] - batch.offsets[b]);
}

const float* problem_rows(const BatchView& batch, std::size_t b) {
  return batch.features + static_cast<std::size_t>(batch.offsets[b]) * batch.dim;
}

// Per-thread scratch for the distance-matrix based routines.
struct MatrixWorkspace {
  std::vector<double> dist, copy;
  DistanceWorkspace dws;
  LinkageWorkspace lws;
  SilhouetteWorkspace sws;
};

// Full distance matrix of problem b in ws.dist (row stride returned), padding columns zeroed.
std::size_t problem_distances(const BatchView& batch, std::size_t b, Metric metric, bool f64, Simd simd,
                              MatrixWorkspace& ws) {
  const std::size_t n = problem_size(batch, b);
  // One spare cache line per row: a row stride of a power of two bytes would map a whole column
  // to a couple of L1 sets, and the linkage writes columns.
  const std::size_t ld = round_up(n, 8) + 8;
  if (ws.dist.size() < n * ld) ws.dist.resize(n * ld);
  for (std::size_t i = 0; i < n; ++i) std::fill(ws.dist.begin() + static_cast<std::ptrdiff_t>(i * ld + n),
                                                ws.dist.begin() + static_cast<std::ptrdiff_t>((i + 1) * ld), 0.0);
  distance_matrix(problem_rows(batch, b), n, batch.dim, metric, f64, simd, ws.dws, ws.dist.data(), ld,
                  RowContext{b, static_cast<std::size_t>(batch.offsets[b])});
  return ld;
}

std::vector<std::int64_t> linkage_offsets(const std::int64_t* offsets, std::size_t n_problems) {
  std::vector<std::int64_t> out(n_problems + 1, 0);
  for (std::size_t b = 0; b < n_problems; ++b)
    out[b + 1] = out[b] + std::max<std::int64_t>(offsets[b + 1] - offsets[b] - 1, 0);
  return out;
}

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

}  // namespace

void validate_batch(const BatchView& batch) {
  if (batch.dim == 0) fail("features: need at least one column (dim >= 1)");
  if (batch.offsets[0] != 0) fail("offsets[0] must be 0, got " + std::to_string(batch.offsets[0]));
  for (std::size_t b = 0; b < batch.n_problems; ++b) {
    if (batch.offsets[b + 1] < batch.offsets[b]) {
      std::ostringstream out;
      out << "offsets must be non-decreasing: offsets[" << b << "] = " << batch.offsets[b] << " > offsets["
          << b + 1 << "] = " << batch.offsets[b + 1];
      fail(out.str());
    }
  }
  if (batch.offsets[batch.n_problems] != static_cast<std::int64_t>(batch.n_points)) {
    std::ostringstream out;
    out << "offsets[-1] must equal the number of feature rows (" << batch.n_points << "), got "
        << batch.offsets[batch.n_problems];
    fail(out.str());
  }
  if (batch.weights) {
    for (std::size_t i = 0; i < batch.n_points; ++i) {
      const float w = batch.weights[i];
      if (!(std::isfinite(w) && w > 0.0f)) {
        std::ostringstream out;
        out << "weights must be finite and > 0: weights[" << i << "] = " << w;
        fail(out.str());
      }
    }
  }
}

HierarchicalResult hierarchical_batch(const BatchView& batch, const HierarchicalOptions& options) {
  validate_batch(batch);
  for (std::size_t b = 0; b < batch.n_problems; ++b) {
    if (problem_size(batch, b) > kMaxLinkagePoints) {
      std::ostringstream out;
      out << "offsets: problem " << b << " has " << problem_size(batch, b) << " points; average linkage is limited to "
          << kMaxLinkagePoints << " points per problem (use k-means for larger problems)";
      fail(out.str());
    }
  }
  HierarchicalResult result;
  const std::size_t B = batch.n_problems;
  result.labels.assign(batch.n_points, 0);
  result.n_clusters.assign(B, 0);
  result.silhouette.assign(B, kNaN);
  result.linkage_offsets = linkage_offsets(batch.offsets, B);
  result.linkage.assign(static_cast<std::size_t>(result.linkage_offsets[B]) * 4, 0.0);
  const Simd simd = active_simd();
  const int threads = resolve_threads(options.threads, B);
  std::vector<MatrixWorkspace> workspaces(static_cast<std::size_t>(threads));
  parallel_for(B, threads, [&](std::size_t b, int worker) {
    MatrixWorkspace& ws = workspaces[static_cast<std::size_t>(worker)];
    const std::size_t n = problem_size(batch, b);
    if (n == 0) return;
    const auto first = static_cast<std::size_t>(batch.offsets[b]);
    const std::size_t ld = problem_distances(batch, b, options.metric, options.f64, simd, ws);
    const bool automatic = options.criterion == Criterion::automatic;
    if (automatic) ws.copy.assign(ws.dist.begin(), ws.dist.begin() + static_cast<std::ptrdiff_t>(n * ld));
    double* z = result.linkage.data() + static_cast<std::size_t>(result.linkage_offsets[b]) * 4;
    average_linkage(simd, ws.dist.data(), ld, n, batch.weights ? batch.weights + first : nullptr, z, ws.lws);
    std::int32_t* labels = result.labels.data() + first;
    if (options.criterion == Criterion::distance) {
      result.n_clusters[b] = cut_distance(z, n, options.threshold, labels, ws.lws);
    } else if (options.criterion == Criterion::maxclust) {
      result.n_clusters[b] = cut_maxclust(z, n, options.n_clusters, labels, ws.lws);
    } else {
      const AutoCut cut = cut_auto(z, ws.copy.data(), ld, n, options.max_clusters, options.min_silhouette, labels,
                                   ws.lws, ws.sws);
      result.n_clusters[b] = cut.n_clusters;
      result.silhouette[b] = cut.silhouette;
    }
  });
  return result;
}

CutResult cut_batch(const double* linkage, std::size_t n_rows, const std::int64_t* offsets, std::size_t n_problems,
                    Criterion criterion, double threshold, std::size_t n_clusters, int threads) {
  const std::vector<std::int64_t> lo = linkage_offsets(offsets, n_problems);
  if (static_cast<std::size_t>(lo[n_problems]) != n_rows) {
    std::ostringstream out;
    out << "linkage: expected " << lo[n_problems] << " rows (sum of max(n_b - 1, 0) over the problems), got "
        << n_rows;
    fail(out.str());
  }
  for (std::size_t b = 0; b < n_problems; ++b)
    validate_linkage(linkage + static_cast<std::size_t>(lo[b]) * 4, static_cast<std::size_t>(offsets[b + 1] - offsets[b]), b);
  CutResult result;
  result.labels.assign(static_cast<std::size_t>(offsets[n_problems]), 0);
  result.n_clusters.assign(n_problems, 0);
  const int nt = resolve_threads(threads, n_problems);
  std::vector<LinkageWorkspace> workspaces(static_cast<std::size_t>(nt));
  parallel_for(n_problems, nt, [&](std::size_t b, int worker) {
    const auto n = static_cast<std::size_t>(offsets[b + 1] - offsets[b]);
    const double* z = linkage + static_cast<std::size_t>(lo[b]) * 4;
    std::int32_t* labels = result.labels.data() + offsets[b];
    LinkageWorkspace& ws = workspaces[static_cast<std::size_t>(worker)];
    result.n_clusters[b] = criterion == Criterion::distance ? cut_distance(z, n, threshold, labels, ws)
                                                            : cut_maxclust(z, n, n_clusters, labels, ws);
  });
  return result;
}

std::vector<double> silhouette_batch(const BatchView& batch, const std::int64_t* labels, Metric metric, bool f64,
                                     int threads) {
  validate_batch(batch);
  std::vector<double> out(batch.n_problems, kNaN);
  const Simd simd = active_simd();
  const int nt = resolve_threads(threads, batch.n_problems);
  std::vector<MatrixWorkspace> workspaces(static_cast<std::size_t>(nt));
  parallel_for(batch.n_problems, nt, [&](std::size_t b, int worker) {
    MatrixWorkspace& ws = workspaces[static_cast<std::size_t>(worker)];
    const std::size_t n = problem_size(batch, b);
    if (n < 3) return;  // fewer than 2 or more than n - 1 clusters: undefined
    const std::int64_t* lab = labels + batch.offsets[b];
    std::vector<std::int64_t> values(lab, lab + n);
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    std::vector<std::int32_t> dense(n);
    for (std::size_t i = 0; i < n; ++i)
      dense[i] = static_cast<std::int32_t>(std::lower_bound(values.begin(), values.end(), lab[i]) - values.begin());
    if (values.size() < 2 || values.size() + 1 > n) return;
    const std::size_t ld = problem_distances(batch, b, metric, f64, simd, ws);
    out[b] = silhouette(ws.dist.data(), ld, n, dense.data(), values.size(), ws.sws);
  });
  return out;
}

std::vector<double> pdist_batch(const BatchView& batch, Metric metric, bool f64, int threads) {
  validate_batch(batch);
  std::vector<std::size_t> start(batch.n_problems + 1, 0);
  for (std::size_t b = 0; b < batch.n_problems; ++b) {
    const std::size_t n = problem_size(batch, b);
    start[b + 1] = start[b] + (n == 0 ? 0 : n * (n - 1) / 2);
  }
  std::vector<double> out(start[batch.n_problems]);
  const Simd simd = active_simd();
  const int nt = resolve_threads(threads, batch.n_problems);
  std::vector<MatrixWorkspace> workspaces(static_cast<std::size_t>(nt));
  parallel_for(batch.n_problems, nt, [&](std::size_t b, int worker) {
    MatrixWorkspace& ws = workspaces[static_cast<std::size_t>(worker)];
    const std::size_t n = problem_size(batch, b);
    if (n == 0) return;
    const std::size_t ld = problem_distances(batch, b, metric, f64, simd, ws);
    double* dst = out.data() + start[b];
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = i + 1; j < n; ++j) *dst++ = ws.dist[i * ld + j];
  });
  return out;
}

KMeansBatchResult kmeans_batch(const BatchView& batch, const KMeansBatchOptions& options) {
  validate_batch(batch);
  if (options.k == 0) fail("n_clusters must be >= 1");
  const std::size_t B = batch.n_problems, dim = batch.dim, k = options.k;
  if (options.init) {
    for (std::size_t b = 0; b < B; ++b)
      if (problem_size(batch, b) < k) {
        std::ostringstream out;
        out << "init: problem " << b << " has " << problem_size(batch, b) << " points, fewer than the " << k
            << " initial centres";
        fail(out.str());
      }
    for (std::size_t i = 0; i < B * k * dim; ++i)
      if (!std::isfinite(options.init[i])) fail("init must be finite: init.flat[" + std::to_string(i) + "]");
  }
  KMeansBatchResult result;
  result.labels.assign(batch.n_points, 0);
  result.centroids.assign(B * k * dim, std::numeric_limits<float>::quiet_NaN());
  result.inertia.assign(B, 0.0);
  result.n_iter.assign(B, 0);
  // Few problems (one large one, typically): parallelise inside each problem instead.
  const int hw = resolve_threads(options.threads, std::numeric_limits<std::size_t>::max());
  const bool inner = B < static_cast<std::size_t>(hw);
  KMeansOptions per;
  per.k = k;
  per.n_init = options.n_init;
  per.max_iter = options.max_iter;
  per.tol = options.tol;
  per.seed = options.seed;
  per.simd = active_simd();
  per.threads = inner ? hw : 1;
  const int outer = inner ? 1 : resolve_threads(hw, B);
  std::vector<KMeansWorkspace> workspaces(static_cast<std::size_t>(outer));
  std::vector<std::vector<float>> normalised(static_cast<std::size_t>(outer));
  parallel_for(B, outer, [&](std::size_t b, int worker) {
    const std::size_t n = problem_size(batch, b);
    if (n == 0) return;
    const auto first = static_cast<std::size_t>(batch.offsets[b]);
    const float* x = problem_rows(batch, b);
    check_rows_finite(x, n, dim, RowContext{b, first});
    for (std::size_t i = 0; i < n * dim; ++i)
      if (std::fabs(x[i]) > 1e18f)  // squared norms would overflow the float32 products
        fail("features[" + std::to_string(first + i / dim) + "] is too large for k-means (|value| > 1e18)");
    if (options.metric == Metric::cosine) {
      std::vector<float>& xs = normalised[static_cast<std::size_t>(worker)];
      xs.assign(x, x + n * dim);
      for (std::size_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (std::size_t c = 0; c < dim; ++c) s += static_cast<double>(xs[i * dim + c]) * xs[i * dim + c];
        const double inv = s > 0.0 ? 1.0 / std::sqrt(s) : 0.0;  // zero vectors stay at the origin
        for (std::size_t c = 0; c < dim; ++c) xs[i * dim + c] = static_cast<float>(xs[i * dim + c] * inv);
      }
      x = xs.data();
    }
    const KMeansProblemResult r =
        kmeans_problem(x, n, dim, batch.weights ? batch.weights + first : nullptr,
                       options.init ? options.init + b * k * dim : nullptr, per, b,
                       workspaces[static_cast<std::size_t>(worker)], result.labels.data() + first,
                       result.centroids.data() + b * k * dim);
    result.inertia[b] = r.inertia;
    result.n_iter[b] = r.n_iter;
  });
  return result;
}

}  // namespace neuronscope::cluster
