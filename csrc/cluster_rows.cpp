#include "cluster_rows.hpp"

#include <algorithm>
#include <limits>

// The Lance-Williams update must round like scipy's: no fused multiply-add contraction here.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define NS_ALWAYS_INLINE inline
#endif

#if NEURONSCOPE_X86_DISPATCH
#include <immintrin.h>
#endif

namespace neuronscope::cluster {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double argmin_generic(const double* row, const double* penalty, std::size_t begin, std::size_t end,
                      std::size_t* index) {
  double m = kInf;
  std::size_t at = end;
  for (std::size_t i = begin; i < end; ++i) {
    const double v = row[i] + penalty[i];
    if (v < m) {
      m = v;
      at = i;
    }
  }
  *index = at;
  return m;
}

void average_generic(double* ry, const double* rx, double nx, double ny, std::size_t begin, std::size_t end) {
  const double nxy = nx + ny;
  for (std::size_t i = begin; i < end; ++i) ry[i] = (nx * rx[i] + ny * ry[i]) / nxy;
}

// Plain loop with the clamps as selects, so that the compiler vectorises it at the width of
// whichever wrapper below it is inlined into.
template <class G>
NS_ALWAYS_INLINE void cosine_portable(const G* g, const double* half, const double* inv, double half_i, double inv_i,
                                      double* out, std::size_t begin, std::size_t end) {
  for (std::size_t j = begin; j < end; ++j) {
    const double d = half_i + half[j] - (static_cast<double>(g[j]) * inv_i) * inv[j];
    const double lo = d < 0.0 ? 0.0 : d;
    out[j] = lo > 2.0 ? 2.0 : lo;
  }
}

template <class G>
void cosine_generic(const G* g, const double* half, const double* inv, double half_i, double inv_i, double* out,
                    std::size_t begin, std::size_t end) {
  cosine_portable(g, half, inv, half_i, inv_i, out, begin, end);
}

void mirror_generic(std::size_t n, double* dist, std::size_t ld, std::size_t from) {
  constexpr std::size_t B = 8;  // blocks keep the transposed writes within a few cache lines
  for (std::size_t i0 = from; i0 < n; i0 += B) {
    const std::size_t i1 = std::min(n, i0 + B);
    for (std::size_t j0 = i0; j0 < n; j0 += B) {
      const std::size_t j1 = std::min(n, j0 + B);
      for (std::size_t j = j0; j < j1; ++j)
        for (std::size_t i = i0; i < std::min(i1, j); ++i) dist[j * ld + i] = dist[i * ld + j];
    }
  }
}

#if NEURONSCOPE_X86_DISPATCH

template <class G>
__attribute__((target("avx512f"))) void cosine_avx512(const G* g, const double* half, const double* inv,
                                                      double half_i, double inv_i, double* out, std::size_t begin,
                                                      std::size_t end) {
  cosine_portable(g, half, inv, half_i, inv_i, out, begin, end);
}

template <class G>
__attribute__((target("avx2"))) void cosine_avx2(const G* g, const double* half, const double* inv, double half_i,
                                                 double inv_i, double* out, std::size_t begin, std::size_t end) {
  cosine_portable(g, half, inv, half_i, inv_i, out, begin, end);
}

// GCC 12 reports its own _mm512_undefined_* placeholders inside _mm512_min_pd as
// (maybe) uninitialized (GCC bug 105593, fixed in 13): silence that one warning here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Two passes: the minimum (four independent min chains hide the latency), then its first index
// (which usually stops early). One pass tracking indices with blends measured slower.
__attribute__((target("avx512f"))) double argmin_avx512(const double* row, const double* penalty,
                                                        std::size_t begin, std::size_t end, std::size_t* index) {
  __m512d m0 = _mm512_set1_pd(kInf), m1 = m0, m2 = m0, m3 = m0;
  std::size_t i = begin;
  for (; i + 32 <= end; i += 32) {
    m0 = _mm512_min_pd(_mm512_add_pd(_mm512_loadu_pd(row + i), _mm512_loadu_pd(penalty + i)), m0);
    m1 = _mm512_min_pd(_mm512_add_pd(_mm512_loadu_pd(row + i + 8), _mm512_loadu_pd(penalty + i + 8)), m1);
    m2 = _mm512_min_pd(_mm512_add_pd(_mm512_loadu_pd(row + i + 16), _mm512_loadu_pd(penalty + i + 16)), m2);
    m3 = _mm512_min_pd(_mm512_add_pd(_mm512_loadu_pd(row + i + 24), _mm512_loadu_pd(penalty + i + 24)), m3);
  }
  for (; i < end; i += 8)
    m0 = _mm512_min_pd(_mm512_add_pd(_mm512_loadu_pd(row + i), _mm512_loadu_pd(penalty + i)), m0);
  alignas(64) double lanes[8];
  _mm512_store_pd(lanes, _mm512_min_pd(_mm512_min_pd(m0, m1), _mm512_min_pd(m2, m3)));
  double m = lanes[0];
  for (int l = 1; l < 8; ++l) m = lanes[l] < m ? lanes[l] : m;
  const __m512d target = _mm512_set1_pd(m);
  for (i = begin; i < end; i += 8) {
    const __m512d v = _mm512_add_pd(_mm512_loadu_pd(row + i), _mm512_loadu_pd(penalty + i));
    const unsigned mask = _mm512_cmp_pd_mask(v, target, _CMP_EQ_OQ);
    if (mask) {
      *index = i + static_cast<std::size_t>(__builtin_ctz(mask));
      return m;
    }
  }
  *index = end;
  return m;
}

// Off-diagonal 8 x 8 blocks are transposed in registers; the diagonal blocks and the ragged edge
// go through the scalar loop.
__attribute__((target("avx512f"))) void mirror_avx512(std::size_t n, double* dist, std::size_t ld) {
  const std::size_t full = n / 8 * 8;
  for (std::size_t i0 = 0; i0 < full; i0 += 8) {
    for (std::size_t j0 = i0 + 8; j0 < full; j0 += 8) {
      __m512d r[8], t[8], u[8];
      for (int q = 0; q < 8; ++q) r[q] = _mm512_loadu_pd(dist + (i0 + static_cast<std::size_t>(q)) * ld + j0);
      for (int q = 0; q < 4; ++q) {
        t[2 * q] = _mm512_unpacklo_pd(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm512_unpackhi_pd(r[2 * q], r[2 * q + 1]);
      }
      for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h + 3
        u[4 * h] = _mm512_shuffle_f64x2(t[4 * h], t[4 * h + 2], 0x88);      // columns 0, 4
        u[4 * h + 1] = _mm512_shuffle_f64x2(t[4 * h + 1], t[4 * h + 3], 0x88);  // columns 1, 5
        u[4 * h + 2] = _mm512_shuffle_f64x2(t[4 * h], t[4 * h + 2], 0xDD);  // columns 2, 6
        u[4 * h + 3] = _mm512_shuffle_f64x2(t[4 * h + 1], t[4 * h + 3], 0xDD);  // columns 3, 7
      }
      for (int c = 0; c < 4; ++c) {
        _mm512_storeu_pd(dist + (j0 + static_cast<std::size_t>(c)) * ld + i0, _mm512_shuffle_f64x2(u[c], u[4 + c], 0x88));
        _mm512_storeu_pd(dist + (j0 + static_cast<std::size_t>(c) + 4) * ld + i0,
                         _mm512_shuffle_f64x2(u[c], u[4 + c], 0xDD));
      }
    }
    // Diagonal block and the columns past the last full block.
    for (std::size_t j = i0 + 1; j < n; ++j)
      for (std::size_t i = i0; i < std::min(i0 + 8, j); ++i)
        if (j < i0 + 8 || j >= full) dist[j * ld + i] = dist[i * ld + j];
  }
  mirror_generic(n, dist, ld, full);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

__attribute__((target("avx512f"))) void average_avx512(double* ry, const double* rx, double nx, double ny,
                                                       std::size_t begin, std::size_t end) {
  const __m512d vx = _mm512_set1_pd(nx), vy = _mm512_set1_pd(ny), vxy = _mm512_set1_pd(nx + ny);
  for (std::size_t i = begin; i < end; i += 8) {
    const __m512d num = _mm512_add_pd(_mm512_mul_pd(vx, _mm512_loadu_pd(rx + i)),
                                      _mm512_mul_pd(vy, _mm512_loadu_pd(ry + i)));
    _mm512_storeu_pd(ry + i, _mm512_div_pd(num, vxy));
  }
}

__attribute__((target("avx2"))) double argmin_avx2(const double* row, const double* penalty, std::size_t begin,
                                                   std::size_t end, std::size_t* index) {
  __m256d lo = _mm256_set1_pd(kInf), hi = lo;
  for (std::size_t i = begin; i < end; i += 8) {
    lo = _mm256_min_pd(_mm256_add_pd(_mm256_loadu_pd(row + i), _mm256_loadu_pd(penalty + i)), lo);
    hi = _mm256_min_pd(_mm256_add_pd(_mm256_loadu_pd(row + i + 4), _mm256_loadu_pd(penalty + i + 4)), hi);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_min_pd(lo, hi));
  double m = lanes[0];
  for (int l = 1; l < 4; ++l) m = lanes[l] < m ? lanes[l] : m;
  const __m256d target = _mm256_set1_pd(m);
  for (std::size_t i = begin; i < end; i += 4) {
    const __m256d v = _mm256_add_pd(_mm256_loadu_pd(row + i), _mm256_loadu_pd(penalty + i));
    const int mask = _mm256_movemask_pd(_mm256_cmp_pd(v, target, _CMP_EQ_OQ));
    if (mask) {
      *index = i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
      return m;
    }
  }
  *index = end;
  return m;
}

__attribute__((target("avx2"))) void average_avx2(double* ry, const double* rx, double nx, double ny,
                                                  std::size_t begin, std::size_t end) {
  const __m256d vx = _mm256_set1_pd(nx), vy = _mm256_set1_pd(ny), vxy = _mm256_set1_pd(nx + ny);
  for (std::size_t i = begin; i < end; i += 4) {
    const __m256d num = _mm256_add_pd(_mm256_mul_pd(vx, _mm256_loadu_pd(rx + i)),
                                      _mm256_mul_pd(vy, _mm256_loadu_pd(ry + i)));
    _mm256_storeu_pd(ry + i, _mm256_div_pd(num, vxy));
  }
}

#endif  // NEURONSCOPE_X86_DISPATCH

}  // namespace

void cosine_row(Simd simd, const float* g, const double* half, const double* inv, double half_i, double inv_i,
                double* out, std::size_t begin, std::size_t end) {
#if NEURONSCOPE_X86_DISPATCH
  if (simd == Simd::avx512) return cosine_avx512(g, half, inv, half_i, inv_i, out, begin, end);
  if (simd == Simd::avx2) return cosine_avx2(g, half, inv, half_i, inv_i, out, begin, end);
#else
  (void)simd;
#endif
  cosine_generic(g, half, inv, half_i, inv_i, out, begin, end);
}

void cosine_row(Simd simd, const double* g, const double* half, const double* inv, double half_i, double inv_i,
                double* out, std::size_t begin, std::size_t end) {
#if NEURONSCOPE_X86_DISPATCH
  if (simd == Simd::avx512) return cosine_avx512(g, half, inv, half_i, inv_i, out, begin, end);
  if (simd == Simd::avx2) return cosine_avx2(g, half, inv, half_i, inv_i, out, begin, end);
#else
  (void)simd;
#endif
  cosine_generic(g, half, inv, half_i, inv_i, out, begin, end);
}

void mirror_upper(Simd simd, std::size_t n, double* dist, std::size_t ld) {
#if NEURONSCOPE_X86_DISPATCH
  if (simd == Simd::avx512) return mirror_avx512(n, dist, ld);
#else
  (void)simd;
#endif
  mirror_generic(n, dist, ld, 0);
}

double masked_argmin(Simd simd, const double* row, const double* penalty, std::size_t begin, std::size_t end,
                     std::size_t* index) {
#if NEURONSCOPE_X86_DISPATCH
  if (simd == Simd::avx512) return argmin_avx512(row, penalty, begin, end, index);
  if (simd == Simd::avx2) return argmin_avx2(row, penalty, begin, end, index);
#else
  (void)simd;
#endif
  return argmin_generic(row, penalty, begin, end, index);
}

void average_rows(Simd simd, double* ry, const double* rx, double nx, double ny, std::size_t begin,
                  std::size_t end) {
#if NEURONSCOPE_X86_DISPATCH
  if (simd == Simd::avx512) return average_avx512(ry, rx, nx, ny, begin, end);
  if (simd == Simd::avx2) return average_avx2(ry, rx, nx, ny, begin, end);
#else
  (void)simd;
#endif
  average_generic(ry, rx, nx, ny, begin, end);
}

}  // namespace neuronscope::cluster
