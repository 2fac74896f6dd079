#include "cluster_distance.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "cluster_pack.hpp"
#include "cluster_rows.hpp"

// Identical rows must cancel exactly in the cosine formula below: no fused multiply-add.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace neuronscope::cluster {
namespace {

std::string row_name(const RowContext& where, std::size_t i) {
  std::ostringstream out;
  out << "features[" << where.first_row + i << "] (problem " << where.problem << ", point " << i << ")";
  return out.str();
}

[[noreturn]] void throw_overflow(const RowContext& where, std::size_t i) {
  throw std::invalid_argument(row_name(where, i) +
                              " is too large: its products overflow float32 (rescale the features)");
}

// Raw tile products (Gram matrix for dot, squared distances for sqdiff) of the n rows, upper
// triangle (j >= i) valid, in ws.c32 / ws.c64 with row stride *ldc.
template <class T>
const T* pair_products(const float* x, std::size_t n, std::size_t dim, PairOp op, Simd simd, std::vector<T>& a,
                       std::vector<T>& b, std::vector<T>& c, std::size_t* ldc) {
  const Tiling t = tiling(simd, sizeof(T) == 8);
  const std::size_t na = round_up(n, static_cast<std::size_t>(t.mr));
  const std::size_t nb = round_up(n, static_cast<std::size_t>(t.nr));
  if (a.size() < nb * dim) a.resize(nb * dim);  // pack_panels fills whole wide panels
  if (b.size() < nb * dim) b.resize(nb * dim);
  if (c.size() < na * nb) c.resize(na * nb);
  pack_panels(simd, x, dim, n, dim, t.nr, b.data(), t.mr, a.data());
  pair_tiles(simd, op, a.data(), na / static_cast<std::size_t>(t.mr), b.data(), nb / static_cast<std::size_t>(t.nr),
             dim, c.data(), nb, /*upper_only=*/true);
  *ldc = nb;
  return c.data();
}

template <class T>
void cosine_from_gram(Simd simd, const T* g, std::size_t ldc, std::size_t n, const float* x, std::size_t dim,
                      DistanceWorkspace& ws, double* dist, std::size_t ld, const RowContext& where) {
  ws.inv.resize(n);
  ws.half.resize(n);
  ws.zero.assign(n, 0);
  bool any_zero = false;
  for (std::size_t i = 0; i < n; ++i) {
    const double gii = static_cast<double>(g[i * ldc + i]);
    if (!std::isfinite(gii)) {
      check_rows_finite(x, n, dim, where);
      throw_overflow(where, i);
    }
    if (gii > 0.0) {
      // 1 - cos(i, j) = half_i + half_j - g_ij * inv_i * inv_j with half_i = g_ii * inv_i^2 / 2,
      // which is 1/2 in exact arithmetic. Evaluating half_i in the same order as the cross term
      // makes identical rows cancel to exactly 0.
      ws.inv[i] = 1.0 / std::sqrt(gii);
      ws.half[i] = 0.5 * ((gii * ws.inv[i]) * ws.inv[i]);
    } else {
      ws.inv[i] = 0.0;
      ws.half[i] = 0.5;
      ws.zero[i] = 1;
      any_zero = true;
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    cosine_row(simd, g + i * ldc, ws.half.data(), ws.inv.data(), ws.half[i], ws.inv[i], dist + i * ld, i + 1, n);
  mirror_upper(simd, n, dist, ld);
  for (std::size_t i = 0; i < n; ++i) dist[i * ld + i] = 0.0;
  if (any_zero) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!ws.zero[i]) continue;
      for (std::size_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const double d = ws.zero[j] ? 0.0 : 1.0;
        dist[i * ld + j] = d;
        dist[j * ld + i] = d;
      }
    }
  }
}

template <class T>
void euclidean_from_squares(Simd simd, const T* s, std::size_t ldc, std::size_t n, const float* x,
                            std::size_t dim, double* dist, std::size_t ld, const RowContext& where) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(static_cast<double>(s[i * ldc + i])))  // (a - a)^2 is 0 unless a is inf/nan
      check_rows_finite(x, n, dim, where);
  }
  bool overflow = false;
  for (std::size_t i = 0; i < n; ++i) {
    const T* si = s + i * ldc;
    double* row = dist + i * ld;
    for (std::size_t j = i + 1; j < n; ++j) row[j] = std::sqrt(static_cast<double>(si[j]));
    for (std::size_t j = i + 1; j < n; ++j) overflow |= row[j] > std::numeric_limits<double>::max();
    if (overflow) throw_overflow(where, i);  // +inf: the float32 sum of squares overflowed
  }
  mirror_upper(simd, n, dist, ld);
  for (std::size_t i = 0; i < n; ++i) dist[i * ld + i] = 0.0;
}

}  // namespace

Metric parse_metric(const std::string& name) {
  if (name == "cosine") return Metric::cosine;
  if (name == "euclidean") return Metric::euclidean;
  throw std::invalid_argument("metric: expected 'cosine' or 'euclidean', got '" + name + "'");
}

const char* metric_name(Metric metric) { return metric == Metric::cosine ? "cosine" : "euclidean"; }

void check_rows_finite(const float* x, std::size_t n, std::size_t dim, const RowContext& where) {
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t c = 0; c < dim; ++c) {
      const float v = x[i * dim + c];
      if (!std::isfinite(v)) {
        std::ostringstream out;
        out << row_name(where, i) << " holds a non-finite value (" << v << " in column " << c
            << "): features must be finite";
        throw std::invalid_argument(out.str());
      }
    }
  }
}

void distance_matrix(const float* x, std::size_t n, std::size_t dim, Metric metric, bool f64, Simd simd,
                     DistanceWorkspace& ws, double* dist, std::size_t ld, const RowContext& where) {
  if (n == 0) return;
  const PairOp op = metric == Metric::cosine ? PairOp::dot : PairOp::sqdiff;
  std::size_t ldc = 0;
  if (f64) {
    const double* c = pair_products(x, n, dim, op, simd, ws.a64, ws.b64, ws.c64, &ldc);
    if (metric == Metric::cosine)
      cosine_from_gram(simd, c, ldc, n, x, dim, ws, dist, ld, where);
    else
      euclidean_from_squares(simd, c, ldc, n, x, dim, dist, ld, where);
  } else {
    const float* c = pair_products(x, n, dim, op, simd, ws.a32, ws.b32, ws.c32, &ldc);
    if (metric == Metric::cosine)
      cosine_from_gram(simd, c, ldc, n, x, dim, ws, dist, ld, where);
    else
      euclidean_from_squares(simd, c, ldc, n, x, dim, dist, ld, where);
  }
}

}  // namespace neuronscope::cluster
