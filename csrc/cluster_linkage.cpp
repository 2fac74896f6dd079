#include "cluster_linkage.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "cluster_rows.hpp"

// The Lance-Williams update must round like scipy's: no fused multiply-add contraction here.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace neuronscope::cluster {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

int find_root(std::vector<int>& parent, int i) {
  int r = i;
  while (parent[r] != r) r = parent[r];
  while (parent[i] != r) {
    const int next = parent[i];
    parent[i] = r;
    i = next;
  }
  return r;
}

// Subtree heights md[i] = max(height of row i, md of its merged children).
void max_dists(const double* z, std::size_t n, std::vector<double>& md) {
  md.resize(n - 1);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    double h = z[i * 4 + 2];
    for (int c = 0; c < 2; ++c) {
      const auto id = static_cast<std::size_t>(z[i * 4 + c]);
      if (id >= n) h = std::max(h, md[id - n]);
    }
    md[i] = h;
  }
}

// Joins the two sides of every row with md <= t; labels by first appearance.
int cut_at(const double* z, std::size_t n, double t, std::int32_t* labels, LinkageWorkspace& ws) {
  if (n == 0) return 0;
  ws.parent.resize(n);
  std::iota(ws.parent.begin(), ws.parent.end(), 0);
  ws.rep.resize(2 * n - 1);
  std::iota(ws.rep.begin(), ws.rep.begin() + static_cast<std::ptrdiff_t>(n), 0);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const int a = ws.rep[static_cast<std::size_t>(z[i * 4])];
    const int b = ws.rep[static_cast<std::size_t>(z[i * 4 + 1])];
    ws.rep[n + i] = a;
    if (ws.md[i] <= t) ws.parent[static_cast<std::size_t>(find_root(ws.parent, a))] = find_root(ws.parent, b);
  }
  ws.root_label.assign(n, -1);
  int k = 0;
  for (std::size_t i = 0; i < n; ++i) {
    int& label = ws.root_label[static_cast<std::size_t>(find_root(ws.parent, static_cast<int>(i)))];
    if (label < 0) label = k++;
    labels[i] = label;
  }
  return k;
}

}  // namespace

void average_linkage(Simd simd, double* dist, std::size_t ld, std::size_t n, const float* weights, double* z,
                     LinkageWorkspace& ws) {
  if (n < 2) return;
  ws.penalty.assign(ld, kInf);  // 0 for live clusters, +inf for merged-away ones and padding
  std::fill(ws.penalty.begin(), ws.penalty.begin() + static_cast<std::ptrdiff_t>(n), 0.0);
  ws.size.resize(n);
  ws.count.assign(n, 1);
  for (std::size_t i = 0; i < n; ++i) {
    ws.size[i] = weights ? static_cast<double>(weights[i]) : 1.0;
    dist[i * ld + i] = kInf;
  }
  ws.raw.resize((n - 1) * 4);
  ws.chain.clear();
  // Live slots in no particular order (swap-removal), for the column writes: cheaper than the
  // whole range once many slots are dead.
  ws.live.resize(n);
  ws.where.resize(n);
  std::iota(ws.live.begin(), ws.live.end(), 0);
  std::iota(ws.where.begin(), ws.where.end(), 0);
  std::size_t first_live = 0;
  double* penalty = ws.penalty.data();
  const std::size_t width = (n + 7) / 8 * 8;  // scanned columns: [n, width) are padding

  for (std::size_t step = 0; step + 1 < n; ++step) {
    // Merged clusters live on in the larger slot, so the live slots drift upwards: every scan
    // starts at the first live slot (rounded down to a multiple of 8).
    while (penalty[first_live] != 0.0) ++first_live;
    const std::size_t begin = first_live & ~std::size_t{7};
    if (ws.chain.empty()) ws.chain.push_back(static_cast<int>(first_live));
    std::size_t x = 0, y = 0;
    double current = kInf;
    for (;;) {
      x = static_cast<std::size_t>(ws.chain.back());
      const double* row = dist + x * ld;
      const bool has_prev = ws.chain.size() > 1;
      const std::size_t prev = has_prev ? static_cast<std::size_t>(ws.chain[ws.chain.size() - 2]) : n;
      current = has_prev ? row[prev] : kInf;
      y = prev;
      // scipy scans live clusters in index order and keeps the first strictly smaller value.
      std::size_t at = n;
      const double m = masked_argmin(simd, row, penalty, begin, width, &at);
      if (m < current) {
        current = m;
        y = at;
      }
      if (y >= n) throw std::logic_error("average_linkage: no live neighbour (non-finite distances?)");
      if (has_prev && y == prev) break;
      ws.chain.push_back(static_cast<int>(y));
    }
    ws.chain.pop_back();
    ws.chain.pop_back();
    if (x > y) std::swap(x, y);
    // The merged cluster lives on in slot y (the larger index), as in scipy.
    double* rx = dist + x * ld;
    double* ry = dist + y * ld;
    const double nx = ws.size[x], ny = ws.size[y], nxy = nx + ny;
    average_rows(simd, ry, rx, nx, ny, begin, width);
    ry[y] = kInf;
    const int last = ws.live.back();
    ws.live[static_cast<std::size_t>(ws.where[x])] = last;
    ws.where[static_cast<std::size_t>(last)] = ws.where[x];
    ws.live.pop_back();
    for (const int i : ws.live) dist[static_cast<std::size_t>(i) * ld + y] = ry[i];
    penalty[x] = kInf;
    ws.size[y] = nxy;
    ws.count[y] += ws.count[x];
    double* r = ws.raw.data() + step * 4;
    r[0] = static_cast<double>(x);
    r[1] = static_cast<double>(y);
    r[2] = current;
    r[3] = static_cast<double>(ws.count[y]);
  }

  // Rows in height order (stable, like scipy's mergesort), then cluster ids via union-find.
  ws.order.resize(n - 1);
  std::iota(ws.order.begin(), ws.order.end(), 0);
  std::stable_sort(ws.order.begin(), ws.order.end(),
                   [&](int a, int b) { return ws.raw[static_cast<std::size_t>(a) * 4 + 2] <
                                              ws.raw[static_cast<std::size_t>(b) * 4 + 2]; });
  ws.parent.resize(2 * n - 1);
  std::iota(ws.parent.begin(), ws.parent.end(), 0);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const double* r = ws.raw.data() + static_cast<std::size_t>(ws.order[i]) * 4;
    const int a = find_root(ws.parent, static_cast<int>(r[0]));
    const int b = find_root(ws.parent, static_cast<int>(r[1]));
    const int id = static_cast<int>(n + i);
    ws.parent[static_cast<std::size_t>(a)] = id;
    ws.parent[static_cast<std::size_t>(b)] = id;
    double* out = z + i * 4;
    out[0] = static_cast<double>(std::min(a, b));
    out[1] = static_cast<double>(std::max(a, b));
    out[2] = r[2];
    out[3] = r[3];
  }
}

void validate_linkage(const double* z, std::size_t n, std::size_t problem) {
  std::vector<unsigned char> used(n == 0 ? 0 : 2 * n - 1, 0);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    for (int c = 0; c < 3; ++c) {
      const double v = z[i * 4 + c];
      const bool id_ok = c == 2 || (v >= 0 && v < static_cast<double>(n + i) && v == std::floor(v));
      if (!std::isfinite(v) || !id_ok || (c < 2 && used[static_cast<std::size_t>(v)])) {
        std::ostringstream out;
        out << "linkage: problem " << problem << ", merge " << i << ", column " << c << " = " << v
            << " is not valid (expected " << (c == 2 ? "a finite height" : "an unused cluster id < n + row")
            << ")";
        throw std::invalid_argument(out.str());
      }
      if (c < 2) used[static_cast<std::size_t>(v)] = 1;
    }
  }
}

int cut_distance(const double* z, std::size_t n, double t, std::int32_t* labels, LinkageWorkspace& ws) {
  if (n > 1) max_dists(z, n, ws.md);
  return cut_at(z, n, t, labels, ws);
}

int cut_maxclust(const double* z, std::size_t n, std::size_t k, std::int32_t* labels, LinkageWorkspace& ws) {
  if (n > 1) max_dists(z, n, ws.md);
  double t = -kInf;  // k >= n: nothing is joined
  if (n > 1 && k < n) {
    ws.sorted.assign(ws.md.begin(), ws.md.end());
    const std::size_t idx = n - std::max<std::size_t>(k, 1) - 1;
    std::nth_element(ws.sorted.begin(), ws.sorted.begin() + static_cast<std::ptrdiff_t>(idx), ws.sorted.end());
    t = ws.sorted[idx];
  }
  return cut_at(z, n, t, labels, ws);
}

}  // namespace neuronscope::cluster
