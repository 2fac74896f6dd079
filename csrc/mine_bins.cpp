#include "mine_bins.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace neuronscope::mine {

BinIndex::BinIndex(const float* edges, int64_t n_edges) {
  if (n_edges > kMaxEdges) throw std::invalid_argument("at most 65534 histogram edges are supported");
  keys_.resize(static_cast<size_t>(n_edges));
  for (int64_t i = 0; i < n_edges; ++i) {
    if (std::isnan(edges[i])) throw std::invalid_argument("edges must not contain NaN");
    keys_[i] = order_key(float_bits(edges[i]));
    if (i > 0 && keys_[i] <= keys_[i - 1]) throw std::invalid_argument("edges must be strictly increasing");
  }
  if (n_edges == 0) {
    base_.assign({0, 1});  // bucket 0 holds everything finite (bin 0), bucket 1 is the dummy
    dummy_ = 1;
    keys_.assign(2, std::numeric_limits<uint32_t>::max());
    return;
  }
  // The finest bucketing whose table stays small; stop once no bucket holds two edges.
  constexpr uint64_t kMaxTable = uint64_t{1} << 16;
  for (int s = 31; s >= 1; --s) {
    const uint64_t lo = keys_.front() >> s, hi = keys_.back() >> s;
    if (hi - lo + 1 > kMaxTable) break;
    int most = 0;
    for (int64_t i = 0, run = 0; i < n_edges; ++i) {
      run = (i > 0 && (keys_[i] >> s) == (keys_[i - 1] >> s)) ? run + 1 : 1;
      most = std::max(most, static_cast<int>(run));
    }
    shift_ = s;
    cmax_ = most;
    if (most <= 1) break;
  }
  qlo_ = keys_.front() >> shift_;
  qhi_ = keys_.back() >> shift_;
  base_.resize(qhi_ - qlo_ + 2);
  int64_t below = 0;
  for (uint64_t q = qlo_; q <= qhi_; ++q) {
    const uint64_t first_key = q << shift_;
    while (below < n_edges && keys_[below] < first_key) ++below;
    base_[q - qlo_] = static_cast<uint16_t>(below);
  }
  dummy_ = static_cast<int32_t>(qhi_ - qlo_ + 1);
  base_[dummy_] = static_cast<uint16_t>(n_edges + 1);
  // Padding so the correction never reads past the table (from the dummy bin either): no key compares
  // above UINT32_MAX.
  keys_.resize(static_cast<size_t>(n_edges + 1 + cmax_), std::numeric_limits<uint32_t>::max());
}

}  // namespace neuronscope::mine
