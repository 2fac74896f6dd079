#include "mine_cpu.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "cluster_parallel.hpp"
#include "mine_bins.hpp"

namespace neuronscope {

uint64_t mine_hash32(uint64_t x) {
  constexpr uint64_t kMask = 0xFFFFFFFFull;
  // Only the low 32 bits survive the first mask, so torch's arithmetic and our logical shift agree.
  x = (x ^ (x >> 32)) & kMask;
  x ^= x >> 16;
  x = (x * 0x7FEB352Dull) & kMask;
  x ^= x >> 15;
  x = (x * 0x846CA68Bull) & kMask;
  return x ^ (x >> 16);
}

int64_t mine_position_hash(int64_t position, uint32_t seed) {
  const uint64_t x = static_cast<uint64_t>(position) * 2u + uint64_t{seed} * 0x9E3779B1ull + 1u;
  return static_cast<int64_t>(mine_hash32(x) >> 1);
}

int64_t mine_neuron_hash(int64_t neuron_id, uint32_t seed) {
  const uint64_t x = static_cast<uint64_t>(neuron_id) * 2u + uint64_t{seed} * 0x85EBCA77ull;
  return static_cast<int64_t>(mine_hash32(x) >> 1);
}

namespace {

// Neurons per tile: a tile's state (thresholds, hot histogram bins, moments) stays cache-resident
// while all T rows of the tile stream by, and a row of the tile is 4 cache lines.
constexpr int64_t kTile = 64;
// Rows per moment chunk: the chunk's mean and M2 are computed in two passes over L1-resident data,
// then combined into the running moments with Chan's formula.
constexpr int64_t kChunk = 64;
constexpr float kInf = std::numeric_limits<float>::infinity();

#if defined(__GNUC__)
#define NS_NOINLINE __attribute__((noinline))
#define NS_PREFETCH(p) __builtin_prefetch(p)
#else
#define NS_NOINLINE
#define NS_PREFETCH(p) ((void)(p))
#endif

// The vectorisable passes also get an AVX2 clone, picked at load time (the build targets baseline
// x86-64, whose SSE2 lacks 32-bit min/max and blends). No FMA: every clone computes identical bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define NS_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NS_SIMD_CLONES
#endif

// Rows ahead to prefetch: a tile's rows are a page apart, beyond the reach of the hardware prefetchers.
constexpr int64_t kPrefetchRows = 12;

using mine::BinIndex;
using mine::BinLookup;
using mine::bits_float;
using mine::float_bits;
using mine::is_finite_bits;
using mine::order_key;

// Everything the threads share, read-only.
struct Job {
  MineStats st;
  MineShape shape;
  MineBatch batch;
  BinIndex bins;
  std::vector<int32_t> strata;    // (B + 1,) the scratch bin B maps to the never-sampled stratum S
  std::vector<int64_t> pos_hash;  // (T,)
};

// Mask of the finite floats: all ones, or zero for NaN and ±inf. Selecting by integer masks (never by a
// float comparison) lets GCC vectorise the passes below without -fno-trapping-math.
inline uint32_t finite_mask(uint32_t bits) { return is_finite_bits(bits) ? ~0u : 0u; }

// Pass 1 over one row of a tile, vectorisable: moments' chunk sums, min/max, positives, whether any
// element could enter the top-k or bottom-k (one compare each against the tile's current thresholds), and
// each element's order key and histogram bucket for pass 2.
NS_SIMD_CLONES NS_NOINLINE int scan_row(const float* __restrict row, int64_t nt, int32_t* __restrict ccnt, double* __restrict csum,
             int32_t* __restrict cpos, float* __restrict mn, float* __restrict mx, const float* __restrict tv,
             const float* __restrict bv, uint32_t* __restrict keys, int32_t* __restrict buckets,
             const BinLookup bins) {
  constexpr uint32_t kInfBits = 0x7F800000u, kNegInfBits = 0xFF800000u;
  int flag = 0;
  for (int64_t j = 0; j < nt; ++j) {
    const float x = row[j];
    const uint32_t u = float_bits(x), fm = finite_mask(u);
    const float xs = bits_float(u & fm);  // x, or +0 when not finite
    const float lo = bits_float((u & fm) | (kInfBits & ~fm)), hi = bits_float((u & fm) | (kNegInfBits & ~fm));
    ccnt[j] += static_cast<int32_t>(fm & 1u);
    csum[j] += static_cast<double>(xs);
    cpos[j] += xs > 0.0f;
    mn[j] = lo < mn[j] ? lo : mn[j];
    mx[j] = hi > mx[j] ? hi : mx[j];
    flag |= (x >= tv[j]) | (x <= bv[j]);  // NaN never; ±inf may be flagged, the slow path skips them
    keys[j] = order_key(u);
    buckets[j] = fm ? bins.bucket(keys[j]) : bins.dummy;
  }
  return flag;
}

// Pass 3 of a chunk, vectorisable: sum of squared deviations of the finite values from the chunk means.
NS_SIMD_CLONES void chunk_m2(const float* __restrict rows, int64_t n_rows, int64_t stride, int64_t nt,
              const double* __restrict mb, double* __restrict m2c) {
  for (int64_t t = 0; t < n_rows; ++t) {
    const float* __restrict row = rows + t * stride;
    for (int64_t j = 0; j < nt; ++j) {
      const uint32_t u = float_bits(row[j]), fm = finite_mask(u);
      const double d = static_cast<double>(bits_float(u & fm)) - mb[j];
      m2c[j] += d * d * static_cast<double>(fm & 1u);
    }
  }
}

// True when (v, p) precedes (v2, p2) in "value descending, position ascending" order.
inline bool before_desc(float v, int64_t p, float v2, int64_t p2) { return v > v2 || (v == v2 && p < p2); }
inline bool before_asc(float v, int64_t p, float v2, int64_t p2) { return v < v2 || (v == v2 && p < p2); }
inline bool before_prio(int64_t q, int64_t p, int64_t q2, int64_t p2) { return q > q2 || (q == q2 && p < p2); }

// Sorted insertion of (v, p) into a full row of length k that it beats at the last slot: binary search
// for the first entry it precedes (after any equal entry), then one block move; worst case O(log k + k).
template <bool kDesc>
inline void insert_sorted(float* vals, int64_t* poss, int64_t k, float v, int64_t p) {
  int64_t lo = 0, hi = k - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    const bool before = kDesc ? before_desc(v, p, vals[mid], poss[mid]) : before_asc(v, p, vals[mid], poss[mid]);
    if (before) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  std::memmove(vals + lo + 1, vals + lo, static_cast<size_t>(k - 1 - lo) * sizeof *vals);
  std::memmove(poss + lo + 1, poss + lo, static_cast<size_t>(k - 1 - lo) * sizeof *poss);
  vals[lo] = v;
  poss[lo] = p;
}

// Pass 2 over one row of a tile, branch-free: the exact histogram bin of every element into the tile's
// 16-bit counters (non-finite ones into the scratch column B), and, for samples, one priority compare
// against the element's (neuron, stratum) threshold; the few elements that pass are listed in `cand`.
// A free function with few live values, so the compiler keeps them all in registers.
template <bool kSamples, bool kOneStep>
NS_NOINLINE int64_t bins_kernel(int64_t nt, const uint32_t* __restrict keys, const int32_t* __restrict buckets,
                    const BinLookup bins, const int32_t* __restrict strata, uint16_t* __restrict hist, int64_t B1,
                    const int64_t* __restrict nh, const int64_t* __restrict sthr, int64_t S1, int64_t ph,
                    int32_t* __restrict cand) {
  int64_t found = 0;
  for (int64_t j = 0; j < nt; ++j, hist += B1, sthr += S1) {
    const int32_t b = bins.bin<kOneStep>(buckets[j], keys[j]);
    ++hist[b];
    if (kSamples) {
      cand[found] = static_cast<int32_t>(j);
      found += (ph ^ nh[j]) >= sthr[strata[b]] ? 1 : 0;
    }
  }
  return found;
}

class Worker {
 public:
  explicit Worker(const Job& job) : job_(job) {
    const auto tile = static_cast<size_t>(kTile);
    tv_.resize(tile);
    tp_.resize(tile);
    bv_.resize(tile);
    bp_.resize(tile);
    mn_.resize(tile);
    mx_.resize(tile);
    nh_.resize(tile);
    cnt_.resize(tile);
    mean_.resize(tile);
    m2_.resize(tile);
    pos_.resize(tile);
    nonfin_.resize(tile);
    ccnt_.resize(tile);
    cpos_.resize(tile);
    csum_.resize(tile);
    mb_.resize(tile);
    m2c_.resize(tile);
    sthr_.resize(tile * static_cast<size_t>(job.shape.n_strata + 1));
    hist_.resize(tile * static_cast<size_t>(job.shape.n_bins + 1));
    keys_.resize(tile);
    buckets_.resize(tile);
    cand_.resize(tile);
  }

  void run(int64_t n_begin, int64_t n_end) {
    for (int64_t n0 = n_begin; n0 < n_end; n0 += kTile) tile(n0, std::min(kTile, n_end - n0));
  }

 private:
  void tile(int64_t n0, int64_t nt) {
    const MineStats& st = job_.st;
    const MineShape& sh = job_.shape;
    const MineBatch& batch = job_.batch;
    const int64_t K = sh.k, Kb = sh.bottom_k, S = sh.n_strata, R = sh.samples_per_stratum;
    const int64_t N = sh.n_neurons, T = batch.n_tokens;
    for (int64_t j = 0; j < nt; ++j) {
      const int64_t n = n0 + j;
      // With no slots, +inf / -inf thresholds flag only non-finite values, which the slow path skips.
      tv_[j] = K ? st.topk_values[n * K + K - 1] : kInf;
      tp_[j] = K ? st.topk_positions[n * K + K - 1] : -1;
      bv_[j] = Kb ? st.bottomk_values[n * Kb + Kb - 1] : -kInf;
      bp_[j] = Kb ? st.bottomk_positions[n * Kb + Kb - 1] : -1;
      for (int64_t s = 0; s < S && R; ++s) sthr_[j * (S + 1) + s] = st.sample_priority[(n * S + s) * R + R - 1];
      sthr_[j * (S + 1) + S] = std::numeric_limits<int64_t>::max();  // the non-finite stratum: never sampled
      nh_[j] = mine_neuron_hash(batch.neuron_offset + n, batch.seed);
      mn_[j] = st.min[n];
      mx_[j] = st.max[n];
      cnt_[j] = st.count[n];
      mean_[j] = st.mean[n];
      m2_[j] = st.m2[n];
      pos_[j] = st.positive[n];
      nonfin_[j] = st.nonfinite[n];
    }
    std::fill_n(hist_.begin(), nt * (sh.n_bins + 1), uint16_t{0});
    const BinLookup bins = job_.bins.lookup();
    const bool one_step = bins.cmax == 1;
    int64_t unflushed = 0;  // rows counted in hist_ since its last flush
    for (int64_t c0 = 0; c0 < T; c0 += kChunk) {
      const int64_t rows = std::min(kChunk, T - c0);
      if (unflushed + rows > std::numeric_limits<uint16_t>::max()) {
        flush_hist(n0, nt);
        unflushed = 0;
      }
      unflushed += rows;
      std::fill_n(ccnt_.begin(), nt, 0);
      std::fill_n(cpos_.begin(), nt, 0);
      std::fill_n(csum_.begin(), nt, 0.0);
      for (int64_t t = c0; t < c0 + rows; ++t) {
        const float* row = batch.acts + t * N + n0;
        if (t + kPrefetchRows < T)
          for (int64_t j = 0; j < nt; j += 16) NS_PREFETCH(row + kPrefetchRows * N + j);
        if (scan_row(row, nt, ccnt_.data(), csum_.data(), cpos_.data(), mn_.data(), mx_.data(), tv_.data(),
                     bv_.data(), keys_.data(), buckets_.data(), bins)) {
          extremes_row(row, n0, nt, batch.positions[t]);
        }
        if (R && one_step) {
          bins_row<true, true>(row, n0, nt, t);
        } else if (R) {
          bins_row<true, false>(row, n0, nt, t);
        } else if (one_step) {
          bins_row<false, true>(row, n0, nt, t);
        } else {
          bins_row<false, false>(row, n0, nt, t);
        }
      }
      combine_chunk(batch.acts + c0 * N + n0, rows, N, nt);
    }
    flush_hist(n0, nt);
    for (int64_t j = 0; j < nt; ++j) {
      const int64_t n = n0 + j;
      st.min[n] = mn_[j];
      st.max[n] = mx_[j];
      st.count[n] = cnt_[j];
      st.mean[n] = mean_[j];
      st.m2[n] = m2_[j];
      st.positive[n] = pos_[j];
      st.nonfinite[n] = nonfin_[j];
    }
  }

  // Slow path of a flagged row: exact candidate test and sorted insertion into top-k / bottom-k.
  void extremes_row(const float* row, int64_t n0, int64_t nt, int64_t pos) {
    const MineStats& st = job_.st;
    const int64_t K = job_.shape.k, Kb = job_.shape.bottom_k;
    for (int64_t j = 0; j < nt; ++j) {
      const float x = row[j];
      if (!is_finite_bits(float_bits(x))) continue;
      const int64_t n = n0 + j;
      if (K && before_desc(x, pos, tv_[j], tp_[j])) {
        float* v = st.topk_values + n * K;
        int64_t* p = st.topk_positions + n * K;
        insert_sorted<true>(v, p, K, x, pos);
        tv_[j] = v[K - 1];
        tp_[j] = p[K - 1];
      }
      if (Kb && before_asc(x, pos, bv_[j], bp_[j])) {
        float* v = st.bottomk_values + n * Kb;
        int64_t* p = st.bottomk_positions + n * Kb;
        insert_sorted<false>(v, p, Kb, x, pos);
        bv_[j] = v[Kb - 1];
        bp_[j] = p[Kb - 1];
      }
    }
  }

  // Pass 2 of a row; the sample candidates it finds are inserted afterwards, in neuron order.
  template <bool kSamples, bool kOneStep>
  void bins_row(const float* row, int64_t n0, int64_t nt, int64_t t) {
    const int64_t found = bins_kernel<kSamples, kOneStep>(
        nt, keys_.data(), buckets_.data(), job_.bins.lookup(), job_.strata.data(), hist_.data(),
        job_.shape.n_bins + 1, nh_.data(), sthr_.data(), job_.shape.n_strata + 1, job_.pos_hash[t], cand_.data());
    for (int64_t c = 0; c < found; ++c) {
      const int32_t j = cand_[c];
      const int64_t b = job_.bins.lookup().bin<kOneStep>(buckets_[j], keys_[j]);
      sample(j, n0 + j, job_.strata[b], job_.pos_hash[t] ^ nh_[j], job_.batch.positions[t], row[j]);
    }
  }

  void flush_hist(int64_t n0, int64_t nt) {
    const int64_t B = job_.shape.n_bins;
    int64_t* dst = job_.st.hist + n0 * B;
    for (int64_t j = 0; j < nt; ++j)
      for (int64_t b = 0; b < B; ++b) dst[j * B + b] += hist_[j * (B + 1) + b];
    std::fill_n(hist_.begin(), nt * (B + 1), uint16_t{0});
  }

  NS_NOINLINE void sample(int64_t j, int64_t n, int64_t s, int64_t prio, int64_t pos, float x) {
    const MineStats& st = job_.st;
    const int64_t S = job_.shape.n_strata, R = job_.shape.samples_per_stratum;
    const int64_t cell = (n * S + s) * R;
    int64_t* pr = st.sample_priority + cell;
    int64_t* pp = st.sample_positions + cell;
    float* pv = st.sample_values + cell;
    if (!before_prio(prio, pos, pr[R - 1], pp[R - 1])) return;  // equal priority, later position
    int64_t i = R - 1;
    while (i > 0 && before_prio(prio, pos, pr[i - 1], pp[i - 1])) {
      pr[i] = pr[i - 1];
      pp[i] = pp[i - 1];
      pv[i] = pv[i - 1];
      --i;
    }
    pr[i] = prio;
    pp[i] = pos;
    pv[i] = x;
    sthr_[j * (S + 1) + s] = pr[R - 1];
  }

  // Chan's combination of the chunk's (count, mean, M2) into the running moments.
  void combine_chunk(const float* rows, int64_t n_rows, int64_t stride, int64_t nt) {
    for (int64_t j = 0; j < nt; ++j) {
      mb_[j] = ccnt_[j] ? csum_[j] / ccnt_[j] : 0.0;
      m2c_[j] = 0.0;
    }
    chunk_m2(rows, n_rows, stride, nt, mb_.data(), m2c_.data());
    for (int64_t j = 0; j < nt; ++j) {
      pos_[j] += cpos_[j];
      nonfin_[j] += n_rows - ccnt_[j];
      if (!ccnt_[j]) continue;
      const double na = static_cast<double>(cnt_[j]), nb = ccnt_[j], n = na + nb;
      const double delta = mb_[j] - mean_[j];
      mean_[j] += delta * nb / n;
      m2_[j] += m2c_[j] + delta * delta * na * nb / n;
      cnt_[j] += ccnt_[j];
    }
  }

  const Job& job_;
  // Per-tile state, indexed by neuron within the tile.
  std::vector<float> tv_, bv_, mn_, mx_;
  std::vector<int64_t> tp_, bp_, nh_, cnt_, pos_, nonfin_, sthr_;
  std::vector<double> mean_, m2_, csum_, mb_, m2c_;
  std::vector<int32_t> ccnt_, cpos_;
  std::vector<uint16_t> hist_;     // (tile, B + 1) counts not yet added to st.hist; column B: non-finite
  std::vector<uint32_t> keys_;     // (tile,) order keys of the current row
  std::vector<int32_t> buckets_;   // (tile,) bin-table buckets of the current row
  std::vector<int32_t> cand_;      // (tile,) sample candidates of the current row
};

}  // namespace

void mine_update(const MineStats& st, const MineShape& shape, const MineGrid& grid, const MineBatch& batch,
                 int threads) {
  const int64_t N = shape.n_neurons, T = batch.n_tokens, B = shape.n_bins, S = shape.n_strata;
  if (N < 0 || T < 0 || shape.k < 0 || shape.bottom_k < 0 || shape.samples_per_stratum < 0)
    throw std::invalid_argument("sizes must be non-negative");
  if (B < 1) throw std::invalid_argument("n_bins must be >= 1");
  if (S < 1) throw std::invalid_argument("n_strata must be >= 1");
  Job job{st, shape, batch, BinIndex(grid.edges, B - 1), {}, {}};
  job.strata.resize(static_cast<size_t>(B + 1));
  job.strata[B] = static_cast<int32_t>(S);
  for (int64_t b = 0; b < B; ++b) {
    if (grid.strata[b] < 0 || grid.strata[b] >= S) throw std::invalid_argument("strata must lie in [0, n_strata)");
    job.strata[b] = static_cast<int32_t>(grid.strata[b]);
  }
  if (N == 0 || T == 0) return;
  job.pos_hash.resize(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) job.pos_hash[t] = mine_position_hash(batch.positions[t], batch.seed);

  // One task per block of whole tiles, as even as possible: a worker's state is per tile, and the
  // blocks write disjoint neurons, so the result does not depend on the thread count.
  const int64_t tiles = (N + kTile - 1) / kTile;
  const int64_t blocks = cluster::resolve_threads(threads, static_cast<size_t>(tiles));
  cluster::parallel_for(static_cast<size_t>(blocks), static_cast<int>(blocks), [&](size_t i, int) {
    const int64_t b = static_cast<int64_t>(i);
    Worker(job).run(tiles * b / blocks * kTile, std::min(N, tiles * (b + 1) / blocks * kTile));
  });
}

}  // namespace neuronscope
