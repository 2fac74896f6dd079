// The CPU miner's histogram bin lookup: float order keys and the exact "edges strictly below x" table.
// Pure C++ (no Python headers); used by mine_cpu.cpp, whose hot loops inline BinLookup.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace neuronscope::mine {

inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

inline bool is_finite_bits(uint32_t bits) { return (bits & 0x7F800000u) != 0x7F800000u; }

// Order-preserving map of non-NaN floats to uint32 keys; -0.0 and +0.0 share a key, as they compare equal.
inline uint32_t order_key(uint32_t bits) {
  const uint32_t m = static_cast<uint32_t>(static_cast<int32_t>(bits) >> 31);
  return ((bits ^ m) - m) ^ (~m & 0x80000000u);
}

// Exact "number of edges strictly below x": a table indexed by the high bits of x's order key (sign,
// exponent and the top mantissa bits, i.e. a coarse log2) gives the count below the bucket's first key;
// `cmax` branch-free comparisons against the sorted edge keys then add the edges inside the bucket.
// A non-finite value gets the bucket `dummy`, whose bin is n_bins: one past the real bins, counted in a
// scratch column and mapped to a stratum that never samples, so the hot loop needs no branch for it.
// A plain view (pointers into a BinIndex), passed by value into the vectorised loops.
struct BinLookup {
  const uint32_t* keys;  // edge keys, padded with UINT32_MAX
  const uint16_t* base;  // per bucket: edges whose key is below the bucket's first key
  int32_t qlo, qhi;      // bucket range (keys outside clamp to the end buckets); never negative
  int32_t dummy;         // bucket of the non-finite values
  int shift;             // bucket = key >> shift, shift >= 1 so buckets fit in int32
  int cmax;              // most edges inside one bucket

  int32_t bucket(uint32_t key) const {
    return std::min(std::max(static_cast<int32_t>(key >> shift), qlo), qhi) - qlo;
  }

  template <bool kOneStep>
  int32_t bin(int32_t q, uint32_t key) const {
    int32_t b = base[q];
    if (kOneStep) return b + (keys[b] < key ? 1 : 0);
    for (int c = 0; c < cmax; ++c) b += keys[b] < key ? 1 : 0;
    return b;
  }
};

// Owns the table behind a BinLookup, built once per call from the spec's edges.
class BinIndex {
 public:
  static constexpr int64_t kMaxEdges = 65534;

  // edges: (n_edges,) strictly increasing, no NaN; std::invalid_argument otherwise.
  BinIndex(const float* edges, int64_t n_edges);

  BinLookup lookup() const {
    return {keys_.data(), base_.data(), static_cast<int32_t>(qlo_), static_cast<int32_t>(qhi_), dummy_, shift_, cmax_};
  }

 private:
  std::vector<uint32_t> keys_;
  std::vector<uint16_t> base_;
  uint32_t qlo_ = 0, qhi_ = 0;
  int32_t dummy_ = 0;
  int shift_ = 31;
  int cmax_ = 0;
};

}  // namespace neuronscope::mine
