// Fused, multithreaded CPU miner: folds one batch of activations into per-neuron streaming statistics.
// Pure C++ (no Python headers); bit-exact with python/neuronscope/mining/reference.py::mine_ref, whose
// definitions (grid, strata, hashes, tie-breaking) live in python/neuronscope/mining/spec.py.
#pragma once
#include <cstdint>

namespace neuronscope {

// The LayerStats arrays of n neurons, row-major and contiguous, updated in place.
// K = k, Kb = bottom_k, B = n_bins, S = n_strata, R = samples_per_stratum (see MineShape).
struct MineStats {
  float* topk_values;           // (n, K) descending, empty = -inf
  int64_t* topk_positions;      // (n, K) empty = -1
  float* bottomk_values;        // (n, Kb) ascending, empty = +inf
  int64_t* bottomk_positions;   // (n, Kb)
  int64_t* count;               // (n,) finite values seen
  double* mean;                 // (n,)
  double* m2;                   // (n,) sum of squared deviations
  float* min;                   // (n,)
  float* max;                   // (n,)
  int64_t* positive;            // (n,) values > 0
  int64_t* nonfinite;           // (n,) NaN/inf values skipped
  int64_t* hist;                // (n, B)
  float* sample_values;         // (n, S, R)
  int64_t* sample_positions;    // (n, S, R) empty = -1
  int64_t* sample_priority;     // (n, S, R) descending, empty = -1
};

// Sizes of the state arrays.
struct MineShape {
  int64_t n_neurons = 0;
  int64_t k = 0;
  int64_t bottom_k = 0;
  int64_t n_bins = 0;
  int64_t n_strata = 0;
  int64_t samples_per_stratum = 0;
};

// The histogram grid and sample strata, as computed by spec.hist_edges / spec.bin_strata.
struct MineGrid {
  const float* edges = nullptr;     // (n_bins - 1,) strictly increasing, no NaN
  const int64_t* strata = nullptr;  // (n_bins,) values in [0, n_strata)
};

// One batch: acts (n_tokens, n_neurons) float32 row-major at global token positions (n_tokens,).
struct MineBatch {
  const float* acts = nullptr;
  const int64_t* positions = nullptr;
  int64_t n_tokens = 0;
  int64_t neuron_offset = 0;  // global id of neuron 0, for the sampling hash
  uint32_t seed = 0;          // cfg.seed & 0xFFFFFFFF
};

// spec.hash32 on the low 64 bits of x (wrapping arithmetic, as torch's int64).
uint64_t mine_hash32(uint64_t x);
// spec.position_hash / spec.neuron_hash of one id: in [0, 2**31).
int64_t mine_position_hash(int64_t position, uint32_t seed);
int64_t mine_neuron_hash(int64_t neuron_id, uint32_t seed);

// Folds `batch` into `st` in place. Work is split over `threads` std::threads (0 = hardware threads),
// each owning a contiguous block of neurons; results do not depend on the thread count.
// Throws std::invalid_argument when the grid is malformed.
void mine_update(const MineStats& st, const MineShape& shape, const MineGrid& grid, const MineBatch& batch,
                 int threads);

}  // namespace neuronscope
