#include "cluster_pack.hpp"

#if NEURONSCOPE_X86_DISPATCH
#include <immintrin.h>
#endif

namespace neuronscope::cluster {
namespace {

// Transposes 16 columns at a time: the 16 destination rows of a block (16 x width values) stay in
// L1 while every source row is read in 64-byte pieces.
template <class T>
void pack_impl(const float* rows, std::size_t ld, std::size_t n, std::size_t k, int width, T* out) {
  constexpr std::size_t kBlock = 16;
  const auto w = static_cast<std::size_t>(width);
  const std::size_t n_panels = (n + w - 1) / w;
  for (std::size_t p = 0; p < n_panels; ++p) {
    T* panel = out + p * w * k;
    for (std::size_t c0 = 0; c0 < k; c0 += kBlock) {
      const std::size_t c1 = c0 + kBlock < k ? c0 + kBlock : k;
      for (std::size_t r = 0; r < w; ++r) {
        const std::size_t i = p * w + r;
        if (i < n) {
          const float* row = rows + i * ld;
          for (std::size_t c = c0; c < c1; ++c) panel[c * w + r] = static_cast<T>(row[c]);
        } else {
          for (std::size_t c = c0; c < c1; ++c) panel[c * w + r] = T(0);
        }
      }
    }
  }
}

template <int NW, class T>
void narrow_fixed(const T* wide, std::size_t n_rows, std::size_t k, std::size_t ww, T* out) {
  for (std::size_t q = 0; q < n_rows / NW; ++q) {
    const T* src = wide + (q * NW / ww) * ww * k + (q * NW) % ww;
    T* dst = out + q * NW * k;
    for (std::size_t c = 0; c < k; ++c)
      for (int r = 0; r < NW; ++r) dst[c * NW + r] = src[c * ww + r];
  }
}

template <class T>
void narrow_impl(const T* wide, std::size_t n_rows, std::size_t k, int wide_width, int narrow_width, T* out) {
  const auto ww = static_cast<std::size_t>(wide_width);
  if (narrow_width == 8) return narrow_fixed<8>(wide, n_rows, k, ww, out);
  if (narrow_width == 4) return narrow_fixed<4>(wide, n_rows, k, ww, out);
  const auto nw = static_cast<std::size_t>(narrow_width);
  for (std::size_t q = 0; q < n_rows / nw; ++q) {
    const T* src = wide + (q * nw / ww) * ww * k + (q * nw) % ww;
    T* dst = out + q * nw * k;
    for (std::size_t c = 0; c < k; ++c)
      for (std::size_t r = 0; r < nw; ++r) dst[c * nw + r] = src[c * ww + r];
  }
}

#if NEURONSCOPE_X86_DISPATCH

// GCC 12 reports its own _mm512_undefined_* placeholders inside the shuffle intrinsics as
// "maybe uninitialized" (GCC bug 105593, fixed in 13): silence that one warning here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Packing by 16 x 16 in-register transposes (width a multiple of 16): the scalar transposition
// costs more than the 8 x 32 tile kernel it feeds. Column block c0 of rows r0 .. r0 + 15 becomes
// 16 stores of 16 consecutive floats.
__attribute__((target("avx512f"))) void pack_avx512(const float* rows, std::size_t ld, std::size_t n,
                                                    std::size_t k, std::size_t w, float* out, float* out8) {
  const std::size_t n_panels = (n + w - 1) / w;
  for (std::size_t p = 0; p < n_panels; ++p) {
    float* panel = out + p * w * k;
    for (std::size_t r0 = 0; r0 < w; r0 += 16) {
      for (std::size_t c0 = 0; c0 < k; c0 += 16) {
        const std::size_t cols = k - c0 < 16 ? k - c0 : 16;
        const auto mask = static_cast<__mmask16>((1u << cols) - 1u);
        __m512 r[16], t[16];
        for (std::size_t q = 0; q < 16; ++q) {
          const std::size_t i = p * w + r0 + q;
          if (i < n) {
            // The source rows come from DRAM; 16 concurrent streams outrun the hardware prefetcher.
            _mm_prefetch(reinterpret_cast<const char*>(rows + i * ld + c0 + 64), _MM_HINT_T0);
            r[q] = _mm512_maskz_loadu_ps(mask, rows + i * ld + c0);
          } else {
            r[q] = _mm512_setzero_ps();
          }
        }
        for (int q = 0; q < 8; ++q) {
          t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
          t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
        }
        for (int q = 0; q < 4; ++q) {  // u[4q + j], lane L: column 4L + j of rows 4q .. 4q + 3
          const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
          const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
          r[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
          r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
          r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
          r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
        }
        for (int j = 0; j < 4; ++j) {
          const __m512 s1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), s2 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
          const __m512 s3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
          const __m512 s4 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
          t[j] = _mm512_shuffle_f32x4(s1, s3, 0x88);       // column j
          t[8 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);   // column 8 + j
          t[4 + j] = _mm512_shuffle_f32x4(s2, s4, 0x88);   // column 4 + j
          t[12 + j] = _mm512_shuffle_f32x4(s2, s4, 0xDD);  // column 12 + j
        }
        for (std::size_t c = 0; c < cols; ++c) _mm512_storeu_ps(panel + (c0 + c) * w + r0, t[c]);
        if (out8) {  // the same rows as two panels of 8 (the A side of the 8 x 32 tile)
          float* lo = out8 + (p * w + r0) * k;
          float* hi = lo + 8 * k;
          for (std::size_t c = 0; c < cols; ++c) {
            _mm256_storeu_ps(lo + (c0 + c) * 8, _mm512_castps512_ps256(t[c]));
            _mm256_storeu_ps(hi + (c0 + c) * 8, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t[c]), 1)));
          }
        }
      }
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // NEURONSCOPE_X86_DISPATCH

}  // namespace

void pack_panels(Simd simd, const float* rows, std::size_t ld, std::size_t n, std::size_t k, int width, float* out,
                 int narrow_width, float* narrow_out) {
#if NEURONSCOPE_X86_DISPATCH
  if (width % 16 == 0 && simd == Simd::avx512 && (narrow_out == nullptr || narrow_width == 8))
    return pack_avx512(rows, ld, n, k, static_cast<std::size_t>(width), out, narrow_out);
#else
  (void)simd;
#endif
  pack_impl(rows, ld, n, k, width, out);
  if (narrow_out) narrow_impl(out, round_up(n, static_cast<std::size_t>(width)), k, width, narrow_width, narrow_out);
}

void pack_panels(Simd, const float* rows, std::size_t ld, std::size_t n, std::size_t k, int width, double* out,
                 int narrow_width, double* narrow_out) {
  pack_impl(rows, ld, n, k, width, out);
  if (narrow_out) narrow_impl(out, round_up(n, static_cast<std::size_t>(width)), k, width, narrow_width, narrow_out);
}

}  // namespace neuronscope::cluster
