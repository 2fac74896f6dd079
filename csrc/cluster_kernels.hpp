// Register-tiled pairwise products of rows (the O(n^2 d) part of clustering), with runtime SIMD
// dispatch: AVX-512 and AVX2 kernels are compiled with function-level target attributes and only
// run when the CPU reports them, so the library still runs on any x86-64 (or other) machine.
#pragma once

#include <cstddef>
#include <string>

// The AVX2 / AVX-512 kernels need GCC or Clang function target attributes. Defining
// NEURONSCOPE_NO_SIMD_DISPATCH builds the portable kernels only (any compiler, any CPU).
#if !defined(NEURONSCOPE_NO_SIMD_DISPATCH) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
#define NEURONSCOPE_X86_DISPATCH 1
#else
#define NEURONSCOPE_X86_DISPATCH 0
#endif

namespace neuronscope::cluster {

enum class Simd : int { generic = 0, avx2 = 1, avx512 = 2 };

// Widest kernel family this CPU (and OS) supports.
Simd detected_simd();
// Kernel family in use: detected_simd(), or NEURONSCOPE_SIMD (generic|avx2|avx512) if set at
// first use, or the last set_active_simd().
Simd active_simd();
// Selects a kernel family (tests and benchmarks); throws std::invalid_argument if unsupported.
void set_active_simd(Simd simd);
const char* simd_name(Simd simd);
Simd parse_simd(const std::string& name);  // throws std::invalid_argument

// What a tile computes for rows a (of A) and b (of B):
//   dot:    sum_k a_k * b_k
//   sqdiff: sum_k (a_k - b_k)^2   (exact zero for identical rows, no cancellation)
enum class PairOp { dot, sqdiff };

struct Tiling {
  int mr;  // rows of A per panel (tile height)
  int nr;  // rows of B per panel (tile width); a multiple of mr
};
Tiling tiling(Simd simd, bool f64);

inline std::size_t round_up(std::size_t n, std::size_t m) { return (n + m - 1) / m * m; }

// C[i * ldc + j] = op(A row i, B row j) for i < m_panels * mr and j < n_panels * nr, from panels
// packed with pack_panels (cluster_pack.hpp; A with width mr, B with width nr of tiling(simd, f64)). With upper_only,
// tiles lying entirely below the diagonal (every j < i) are skipped. Every entry is accumulated
// over k in the same order, so identical rows give bitwise identical entries.
void pair_tiles(Simd simd, PairOp op, const float* a_panels, std::size_t m_panels, const float* b_panels,
                std::size_t n_panels, std::size_t k, float* c, std::size_t ldc, bool upper_only);
void pair_tiles(Simd simd, PairOp op, const double* a_panels, std::size_t m_panels, const double* b_panels,
                std::size_t n_panels, std::size_t k, double* c, std::size_t ldc, bool upper_only);

}  // namespace neuronscope::cluster
