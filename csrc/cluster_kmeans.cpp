#include "cluster_kmeans.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "cluster_pack.hpp"
#include "cluster_parallel.hpp"

namespace neuronscope::cluster {
namespace {

// Points per parallel work unit: a multiple of every tile width, large enough to amortise a task.
constexpr std::size_t kChunk = 2048;

// splitmix64: tiny, and the same stream on every platform (std distributions are not portable).
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

class Solver {
 public:
  Solver(const float* x, std::size_t n, std::size_t dim, const float* w, const KMeansOptions& opt,
         KMeansWorkspace& ws)
      : x_(x), n_(n), dim_(dim), w_(w), opt_(opt), ws_(ws), t_(tiling(opt.simd, false)),
        n_chunks_((n + kChunk - 1) / kChunk), threads_(resolve_threads(opt.threads, n_chunks_)) {
    ws.points.resize(round_up(n, static_cast<std::size_t>(t_.nr)) * dim);
    pack_panels(opt.simd, x, dim, n, dim, t_.nr, ws.points.data());
    ws.point_norms.resize(n);
    for (std::size_t i = 0; i < n; ++i) ws.point_norms[i] = squared_norm(x + i * dim);
    ws.tiles.resize(static_cast<std::size_t>(threads_));
    ws.changed.resize(n_chunks_);
    ws.closest.resize(n);
    ws.labels.resize(n);
  }

  // Greedy k-means++ (Arthur & Vassilvitskii, with 2 + ln k candidates per step): candidates are
  // drawn with probability proportional to weight x squared distance to the nearest centre, and
  // the one that lowers the weighted potential most is kept.
  void seed_plusplus(std::size_t k, Rng& rng) {
    ws_.centers.resize(k * dim_);
    ws_.cumulative.resize(n_);
    double total = 0.0;
    for (std::size_t i = 0; i < n_; ++i) ws_.cumulative[i] = (total += weight(i));
    set_center(ws_.centers.data(), draw(rng.uniform() * total));
    const std::size_t trials = 2 + static_cast<std::size_t>(std::log(static_cast<double>(k)));
    std::vector<double> candidates(trials * dim_), pots(trials);
    ws_.partial.assign(n_chunks_ * trials, 0.0);
    pass(ws_.centers.data(), 1, [&](std::size_t, std::size_t b, std::size_t e, const float* t, std::size_t) {
      for (std::size_t j = b; j < e; ++j) ws_.closest[j] = sq_dist(j, 0, t[j - b]);
    });
    double pot = 0.0;
    for (std::size_t i = 0; i < n_; ++i) pot += weight(i) * ws_.closest[i];
    ws_.trial.resize(n_ * trials);
    for (std::size_t c = 1; c < k; ++c) {
      double acc = 0.0;
      for (std::size_t i = 0; i < n_; ++i) ws_.cumulative[i] = (acc += weight(i) * ws_.closest[i]);
      for (std::size_t t = 0; t < trials; ++t) set_center(candidates.data() + t * dim_, draw(rng.uniform() * pot));
      pass(candidates.data(), trials, [&](std::size_t chunk, std::size_t b, std::size_t e, const float* tile,
                                          std::size_t ld) {
        double* p = ws_.partial.data() + chunk * trials;
        std::fill(p, p + trials, 0.0);
        for (std::size_t t = 0; t < trials; ++t) {
          for (std::size_t j = b; j < e; ++j) {
            const double d = std::min(ws_.closest[j], sq_dist(j, t, tile[t * ld + j - b]));
            ws_.trial[j * trials + t] = d;
            p[t] += weight(j) * d;
          }
        }
      });
      std::fill(pots.begin(), pots.end(), 0.0);
      for (std::size_t ch = 0; ch < n_chunks_; ++ch)
        for (std::size_t t = 0; t < trials; ++t) pots[t] += ws_.partial[ch * trials + t];
      const std::size_t best = static_cast<std::size_t>(std::min_element(pots.begin(), pots.end()) - pots.begin());
      std::copy_n(candidates.data() + best * dim_, dim_, ws_.centers.data() + c * dim_);
      for (std::size_t j = 0; j < n_; ++j) ws_.closest[j] = ws_.trial[j * trials + best];
      pot = pots[best];
    }
  }

  // Lloyd iterations from ws.centers, with scikit-learn's stopping rules: labels unchanged
  // ("strict convergence") or squared centre shift <= tol_abs. Ends with labels assigned to the
  // final centres.
  KMeansProblemResult lloyd(std::size_t k, double tol_abs) {
    std::fill(ws_.labels.begin(), ws_.labels.end(), -1);
    ws_.next_centers.resize(k * dim_);
    KMeansProblemResult result;
    bool strict = false;
    for (int it = 0; it < opt_.max_iter; ++it) {
      const std::size_t changed = assign(k, /*accumulate=*/true);
      update_centers(k);
      double shift = 0.0;
      for (std::size_t i = 0; i < k * dim_; ++i) {
        const double d = ws_.next_centers[i] - ws_.centers[i];
        shift += d * d;
      }
      std::swap(ws_.centers, ws_.next_centers);
      result.n_iter = it + 1;
      if (changed == 0) {
        strict = true;
        break;
      }
      if (shift <= tol_abs) break;
    }
    if (!strict) assign(k, /*accumulate=*/false);
    result.inertia = inertia();
    return result;
  }

  // tol x the mean over features of the (unweighted) variance, like scikit-learn; row-wise passes.
  double tolerance(double tol) const {
    if (tol <= 0.0 || n_ == 0) return 0.0;
    std::vector<double> mean(dim_, 0.0), m2(dim_, 0.0);
    for (std::size_t i = 0; i < n_; ++i)
      for (std::size_t c = 0; c < dim_; ++c) mean[c] += x_[i * dim_ + c];
    for (double& m : mean) m /= static_cast<double>(n_);
    for (std::size_t i = 0; i < n_; ++i) {
      for (std::size_t c = 0; c < dim_; ++c) {
        const double d = x_[i * dim_ + c] - mean[c];
        m2[c] += d * d;
      }
    }
    return tol * std::accumulate(m2.begin(), m2.end(), 0.0) / static_cast<double>(n_ * dim_);
  }

 private:
  double weight(std::size_t i) const { return w_ ? static_cast<double>(w_[i]) : 1.0; }

  double squared_norm(const float* row) const {
    double lane[8] = {};
    std::size_t c = 0;
    for (; c + 8 <= dim_; c += 8)
      for (int l = 0; l < 8; ++l) lane[l] += static_cast<double>(row[c + l]) * row[c + l];
    for (; c < dim_; ++c) lane[0] += static_cast<double>(row[c]) * row[c];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }

  std::size_t draw(double u) const {
    const auto it = std::upper_bound(ws_.cumulative.begin(), ws_.cumulative.end(), u);
    return std::min<std::size_t>(static_cast<std::size_t>(it - ws_.cumulative.begin()), n_ - 1);
  }

  void set_center(double* dst, std::size_t i) const {
    for (std::size_t c = 0; c < dim_; ++c) dst[c] = x_[i * dim_ + c];
  }

  // Squared distance of point j to centre r from the tile's dot product, clamped at 0.
  double sq_dist(std::size_t j, std::size_t r, float dot) const {
    return std::max(0.0, ws_.point_norms[j] + ws_.center_norms[r] - 2.0 * static_cast<double>(dot));
  }

  // Dot products of every point with m centres (as float32, like the points), chunk by chunk in
  // parallel: fn(chunk, begin, end, tile, ld) gets tile[r * ld + (j - begin)] = <c_r, x_j>.
  template <class Fn>
  void pass(const double* centers, std::size_t m, Fn&& fn) {
    const auto mr = static_cast<std::size_t>(t_.mr), nr = static_cast<std::size_t>(t_.nr);
    const std::size_t mp = round_up(m, mr);
    std::vector<float> rows(m * dim_);
    for (std::size_t i = 0; i < m * dim_; ++i) rows[i] = static_cast<float>(centers[i]);
    ws_.center_panels.resize(mp * dim_);
    pack_panels(opt_.simd, rows.data(), dim_, m, dim_, t_.mr, ws_.center_panels.data());
    ws_.center_norms.resize(m);
    for (std::size_t r = 0; r < m; ++r) ws_.center_norms[r] = squared_norm(rows.data() + r * dim_);
    parallel_for(n_chunks_, threads_, [&](std::size_t chunk, int worker) {
      const std::size_t b = chunk * kChunk, e = std::min(n_, b + kChunk), ld = round_up(e - b, nr);
      std::vector<float>& tile = ws_.tiles[static_cast<std::size_t>(worker)];
      if (tile.size() < mp * ld) tile.resize(mp * ld);
      pair_tiles(opt_.simd, PairOp::dot, ws_.center_panels.data(), mp / mr, ws_.points.data() + b * dim_, ld / nr,
                 dim_, tile.data(), ld, false);
      fn(chunk, b, e, tile.data(), ld);
    });
  }

  // Nearest centre of every point (lowest index on ties); with accumulate, per-chunk weighted sums
  // of the points of each cluster into ws.partial (k x (dim + 1) per chunk). Returns #changed.
  std::size_t assign(std::size_t k, bool accumulate) {
    const std::size_t stride = k * (dim_ + 1);
    if (accumulate) ws_.partial.resize(n_chunks_ * stride);
    pass(ws_.centers.data(), k, [&](std::size_t chunk, std::size_t b, std::size_t e, const float* t, std::size_t ld) {
      double* acc = accumulate ? ws_.partial.data() + chunk * stride : nullptr;
      if (acc) std::fill(acc, acc + stride, 0.0);
      std::size_t changed = 0;
      for (std::size_t j = b; j < e; ++j) {
        std::size_t best = 0;
        double best_d = sq_dist(j, 0, t[j - b]);
        for (std::size_t r = 1; r < k; ++r) {
          const double d = sq_dist(j, r, t[r * ld + j - b]);
          if (d < best_d) {
            best_d = d;
            best = r;
          }
        }
        ws_.closest[j] = best_d;
        changed += ws_.labels[j] != static_cast<std::int32_t>(best);
        ws_.labels[j] = static_cast<std::int32_t>(best);
        if (acc) {
          const double wj = weight(j);
          double* s = acc + best * (dim_ + 1);
          const float* row = x_ + j * dim_;
          for (std::size_t c = 0; c < dim_; ++c) s[c] += wj * row[c];
          s[dim_] += wj;
        }
      }
      ws_.changed[chunk] = changed;
    });
    return std::accumulate(ws_.changed.begin(), ws_.changed.end(), std::size_t{0});
  }

  // Weighted means from the chunk sums (reduced in chunk order). A cluster left empty takes the
  // point farthest from its centre among clusters that keep other points, as scikit-learn does.
  void update_centers(std::size_t k) {
    const std::size_t stride = k * (dim_ + 1);
    std::vector<double> sums(stride, 0.0);
    for (std::size_t ch = 0; ch < n_chunks_; ++ch)
      for (std::size_t i = 0; i < stride; ++i) sums[i] += ws_.partial[ch * stride + i];
    std::vector<std::size_t> empty;
    for (std::size_t r = 0; r < k; ++r)
      if (sums[r * (dim_ + 1) + dim_] <= 0.0) empty.push_back(r);
    if (!empty.empty()) {
      std::vector<std::size_t> far(n_);
      std::iota(far.begin(), far.end(), 0);
      std::stable_sort(far.begin(), far.end(),
                       [&](std::size_t a, std::size_t b) { return ws_.closest[a] > ws_.closest[b]; });
      std::size_t next = 0;
      for (std::size_t r : empty) {
        for (; next < n_; ++next) {
          const std::size_t i = far[next];
          const auto old = static_cast<std::size_t>(ws_.labels[i]);
          double* so = sums.data() + old * (dim_ + 1);
          if (so[dim_] <= weight(i) * (1.0 + 1e-12)) continue;  // would empty its own cluster
          double* sr = sums.data() + r * (dim_ + 1);
          for (std::size_t c = 0; c < dim_; ++c) {
            so[c] -= weight(i) * x_[i * dim_ + c];
            sr[c] = weight(i) * x_[i * dim_ + c];
          }
          so[dim_] -= weight(i);
          sr[dim_] = weight(i);
          ++next;
          break;
        }
      }
    }
    for (std::size_t r = 0; r < k; ++r) {
      const double* s = sums.data() + r * (dim_ + 1);
      for (std::size_t c = 0; c < dim_; ++c)
        ws_.next_centers[r * dim_ + c] = s[dim_] > 0.0 ? s[c] / s[dim_] : ws_.centers[r * dim_ + c];
    }
  }

  // sum_i w_i ||x_i - c(x_i)||^2 from differences, in double, reduced in chunk order.
  double inertia() {
    std::vector<double> part(n_chunks_, 0.0);
    parallel_for(n_chunks_, threads_, [&](std::size_t chunk, int) {
      const std::size_t b = chunk * kChunk, e = std::min(n_, b + kChunk);
      double total = 0.0;
      for (std::size_t j = b; j < e; ++j) {
        const double* c = ws_.centers.data() + static_cast<std::size_t>(ws_.labels[j]) * dim_;
        const float* row = x_ + j * dim_;
        double s = 0.0;
        for (std::size_t q = 0; q < dim_; ++q) {
          const double d = row[q] - c[q];
          s += d * d;
        }
        total += weight(j) * s;
      }
      part[chunk] = total;
    });
    return std::accumulate(part.begin(), part.end(), 0.0);
  }

  const float* x_;
  std::size_t n_, dim_;
  const float* w_;
  const KMeansOptions& opt_;
  KMeansWorkspace& ws_;
  Tiling t_;
  std::size_t n_chunks_;
  int threads_;
};

}  // namespace

KMeansProblemResult kmeans_problem(const float* x, std::size_t n, std::size_t dim, const float* w,
                                   const float* init, const KMeansOptions& options, std::uint64_t stream,
                                   KMeansWorkspace& ws, std::int32_t* labels, float* centroids) {
  KMeansProblemResult best;
  if (n == 0) return best;
  const std::size_t k = std::min(options.k, n);
  Solver solver(x, n, dim, w, options, ws);
  const double tol_abs = solver.tolerance(options.tol);
  const int runs = init ? 1 : std::max(1, options.n_init);
  best.inertia = std::numeric_limits<double>::infinity();
  for (int run = 0; run < runs; ++run) {
    // One independent stream per (seed, problem, restart), whatever thread runs it.
    Rng rng{options.seed ^ (0xD1B54A32D192ED03ull * (stream + 1)) ^
            (0x8CB92BA72F3D8DD7ull * static_cast<std::uint64_t>(run + 1))};
    if (init) {
      ws.centers.assign(init, init + k * dim);
    } else {
      solver.seed_plusplus(k, rng);
    }
    const KMeansProblemResult r = solver.lloyd(k, tol_abs);
    if (run == 0 || r.inertia < best.inertia) {
      best = r;
      ws.best_labels = ws.labels;
      ws.best_centers = ws.centers;
    }
  }
  std::copy(ws.best_labels.begin(), ws.best_labels.begin() + static_cast<std::ptrdiff_t>(n), labels);
  for (std::size_t i = 0; i < k * dim; ++i) centroids[i] = static_cast<float>(ws.best_centers[i]);
  return best;
}

}  // namespace neuronscope::cluster
