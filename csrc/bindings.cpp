// The only pybind11 file: converts types and errors, holds no algorithm.
//
// Every clustering entry point checks dtypes, shapes and contiguity with the GIL held (TypeError /
// ValueError naming the argument), then runs the core with the GIL released. The outputs are
// std::vectors moved into numpy arrays without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cluster_batch.hpp"
#include "cluster_kernels.hpp"
#include "info.hpp"
#include "mine_cpu.hpp"

namespace py = pybind11;
namespace nc = neuronscope::cluster;

namespace {

template <class T>
const char* dtype_name();
template <>
const char* dtype_name<float>() { return "float32"; }
template <>
const char* dtype_name<double>() { return "float64"; }
template <>
const char* dtype_name<std::int64_t>() { return "int64"; }

// Checks one input array and returns its data pointer.
template <class T>
const T* checked(const py::array& a, const std::string& name, py::ssize_t ndim, const char* shape) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(name + " must be a " + dtype_name<T>() + " array " + shape + ", got dtype " +
                         py::str(a.dtype()).cast<std::string>());
  if (a.ndim() != ndim)
    throw py::value_error(name + " must have shape " + shape + ", got " + std::to_string(a.ndim()) + " dimensions");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(name + " must be C-contiguous (numpy.ascontiguousarray)");
  return static_cast<const T*>(a.data());
}

nc::BatchView batch_view(const py::array& features, const py::array& offsets, const py::object& weights) {
  nc::BatchView v;
  v.features = checked<float>(features, "features", 2, "(P, D)");
  v.n_points = static_cast<std::size_t>(features.shape(0));
  v.dim = static_cast<std::size_t>(features.shape(1));
  v.offsets = checked<std::int64_t>(offsets, "offsets", 1, "(B + 1,)");
  if (offsets.shape(0) < 1) throw py::value_error("offsets must have at least one entry (B + 1 >= 1)");
  v.n_problems = static_cast<std::size_t>(offsets.shape(0) - 1);
  if (!weights.is_none()) {
    py::array w = weights.cast<py::array>();
    v.weights = checked<float>(w, "weights", 1, "(P,)");
    if (static_cast<std::size_t>(w.shape(0)) != v.n_points)
      throw py::value_error("weights must have one entry per feature row (" + std::to_string(v.n_points) + "), got " +
                            std::to_string(w.shape(0)));
  }
  return v;
}

bool parse_precision(const std::string& p) {
  if (p == "float32") return false;
  if (p == "float64") return true;
  throw py::value_error("precision: expected 'float32' or 'float64', got '" + p + "'");
}

nc::Criterion parse_criterion(const std::string& c, bool allow_auto) {
  if (c == "distance") return nc::Criterion::distance;
  if (c == "maxclust") return nc::Criterion::maxclust;
  if (c == "auto" && allow_auto) return nc::Criterion::automatic;
  throw py::value_error(std::string("criterion: expected 'distance', 'maxclust'") + (allow_auto ? " or 'auto'" : "") +
                        ", got '" + c + "'");
}

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  if (values.empty()) return py::array_t<T>(shape);
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), owner);
}

py::ssize_t ssize(std::size_t n) { return static_cast<py::ssize_t>(n); }

py::tuple hierarchical(const py::array& features, const py::array& offsets, const py::object& weights,
                       const std::string& metric, const std::string& precision, const std::string& criterion,
                       double threshold, std::int64_t n_clusters, std::int64_t max_clusters, double min_silhouette,
                       int n_threads) {
  const nc::BatchView view = batch_view(features, offsets, weights);
  nc::HierarchicalOptions opt;
  opt.metric = nc::parse_metric(metric);
  opt.f64 = parse_precision(precision);
  opt.criterion = parse_criterion(criterion, true);
  if (std::isnan(threshold)) throw py::value_error("threshold must not be NaN");
  if (n_clusters < 1) throw py::value_error("n_clusters must be >= 1, got " + std::to_string(n_clusters));
  if (max_clusters < 1) throw py::value_error("max_clusters must be >= 1, got " + std::to_string(max_clusters));
  if (std::isnan(min_silhouette)) throw py::value_error("min_silhouette must not be NaN");
  opt.threshold = threshold;
  opt.n_clusters = static_cast<std::size_t>(n_clusters);
  opt.max_clusters = static_cast<std::size_t>(max_clusters);
  opt.min_silhouette = min_silhouette;
  opt.threads = n_threads;
  nc::HierarchicalResult r;
  {
    py::gil_scoped_release release;
    r = nc::hierarchical_batch(view, opt);
  }
  const std::size_t B = view.n_problems, rows = r.linkage.size() / 4;
  return py::make_tuple(to_numpy(std::move(r.labels), {ssize(view.n_points)}),
                        to_numpy(std::move(r.n_clusters), {ssize(B)}), to_numpy(std::move(r.silhouette), {ssize(B)}),
                        to_numpy(std::move(r.linkage), {ssize(rows), 4}),
                        to_numpy(std::move(r.linkage_offsets), {ssize(B + 1)}));
}

py::tuple cut_linkage(const py::array& linkage, const py::array& offsets, const std::string& criterion,
                      double threshold, std::int64_t n_clusters, int n_threads) {
  const double* z = checked<double>(linkage, "linkage", 2, "(M, 4)");
  if (linkage.shape(1) != 4) throw py::value_error("linkage must have 4 columns, got " + std::to_string(linkage.shape(1)));
  const std::int64_t* off = checked<std::int64_t>(offsets, "offsets", 1, "(B + 1,)");
  if (offsets.shape(0) < 1) throw py::value_error("offsets must have at least one entry (B + 1 >= 1)");
  const auto B = static_cast<std::size_t>(offsets.shape(0) - 1);
  if (off[0] != 0) throw py::value_error("offsets[0] must be 0");
  for (std::size_t b = 0; b < B; ++b)
    if (off[b + 1] < off[b]) throw py::value_error("offsets must be non-decreasing (at index " + std::to_string(b) + ")");
  const nc::Criterion c = parse_criterion(criterion, false);
  if (std::isnan(threshold)) throw py::value_error("threshold must not be NaN");
  if (n_clusters < 1) throw py::value_error("n_clusters must be >= 1, got " + std::to_string(n_clusters));
  nc::CutResult r;
  {
    py::gil_scoped_release release;
    r = nc::cut_batch(z, static_cast<std::size_t>(linkage.shape(0)), off, B, c, threshold,
                      static_cast<std::size_t>(n_clusters), n_threads);
  }
  const std::size_t P = r.labels.size();
  return py::make_tuple(to_numpy(std::move(r.labels), {ssize(P)}), to_numpy(std::move(r.n_clusters), {ssize(B)}));
}

py::array_t<double> silhouette(const py::array& features, const py::array& offsets, const py::array& labels,
                               const std::string& metric, const std::string& precision, int n_threads) {
  const nc::BatchView view = batch_view(features, offsets, py::none());
  const std::int64_t* lab = checked<std::int64_t>(labels, "labels", 1, "(P,)");
  if (static_cast<std::size_t>(labels.shape(0)) != view.n_points)
    throw py::value_error("labels must have one entry per feature row (" + std::to_string(view.n_points) + "), got " +
                          std::to_string(labels.shape(0)));
  const nc::Metric m = nc::parse_metric(metric);
  const bool f64 = parse_precision(precision);
  std::vector<double> out;
  {
    py::gil_scoped_release release;
    out = nc::silhouette_batch(view, lab, m, f64, n_threads);
  }
  return to_numpy(std::move(out), {ssize(view.n_problems)});
}

py::array_t<double> pdist(const py::array& features, const py::array& offsets, const std::string& metric,
                          const std::string& precision, int n_threads) {
  const nc::BatchView view = batch_view(features, offsets, py::none());
  const nc::Metric m = nc::parse_metric(metric);
  const bool f64 = parse_precision(precision);
  std::vector<double> out;
  {
    py::gil_scoped_release release;
    out = nc::pdist_batch(view, m, f64, n_threads);
  }
  const std::size_t size = out.size();
  return to_numpy(std::move(out), {ssize(size)});
}

py::tuple kmeans(const py::array& features, const py::array& offsets, std::int64_t n_clusters, const py::object& weights,
                 const std::string& metric, const py::object& init, int n_init, int max_iter, double tol,
                 std::uint64_t seed, int n_threads) {
  const nc::BatchView view = batch_view(features, offsets, weights);
  nc::KMeansBatchOptions opt;
  opt.metric = nc::parse_metric(metric);
  if (n_clusters < 1) throw py::value_error("n_clusters must be >= 1, got " + std::to_string(n_clusters));
  if (n_init < 1) throw py::value_error("n_init must be >= 1, got " + std::to_string(n_init));
  if (max_iter < 1) throw py::value_error("max_iter must be >= 1, got " + std::to_string(max_iter));
  if (!(tol >= 0.0 && std::isfinite(tol))) throw py::value_error("tol must be finite and >= 0");
  opt.k = static_cast<std::size_t>(n_clusters);
  opt.n_init = n_init;
  opt.max_iter = max_iter;
  opt.tol = tol;
  opt.seed = seed;
  opt.threads = n_threads;
  py::array init_array;
  if (!init.is_none()) {
    init_array = init.cast<py::array>();
    opt.init = checked<float>(init_array, "init", 3, "(B, n_clusters, D)");
    if (static_cast<std::size_t>(init_array.shape(0)) != view.n_problems ||
        init_array.shape(1) != n_clusters || static_cast<std::size_t>(init_array.shape(2)) != view.dim)
      throw py::value_error("init must have shape (B, n_clusters, D) = (" + std::to_string(view.n_problems) + ", " +
                            std::to_string(n_clusters) + ", " + std::to_string(view.dim) + ")");
  }
  nc::KMeansBatchResult r;
  {
    py::gil_scoped_release release;
    r = nc::kmeans_batch(view, opt);
  }
  const std::size_t B = view.n_problems;
  return py::make_tuple(to_numpy(std::move(r.labels), {ssize(view.n_points)}),
                        to_numpy(std::move(r.centroids), {ssize(B), n_clusters, ssize(view.dim)}),
                        to_numpy(std::move(r.inertia), {ssize(B)}), to_numpy(std::move(r.n_iter), {ssize(B)}));
}

}  // namespace

// --- mine_update: validation of the numpy arguments, then the GIL-free core call. ---
namespace mine_binding {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// `obj` as an array of dtype T and rank `ndim`, C-contiguous (and writable when `writable`).
template <class T>
py::array checked(const py::handle& obj, const std::string& name, py::ssize_t ndim, bool writable) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name + " must be a numpy array, got " + std::string(py::str(py::type::of(obj))));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!py::array_t<T>::check_(a))
    throw py::type_error(name + " must have dtype " + std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() != ndim)
    throw py::value_error(name + " must be " + std::to_string(ndim) + "-D, got shape " + shape_str(a));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(name + " must be C-contiguous");
  if (writable && !a.writeable()) throw py::value_error(name + " must be writable (it is updated in place)");
  return a;
}

void expect_shape(const py::array& a, const std::string& name, std::vector<py::ssize_t> want, const char* dims) {
  for (size_t i = 0; i < want.size(); ++i)
    if (a.shape(static_cast<py::ssize_t>(i)) != want[i]) {
      std::string w = "(";
      for (size_t j = 0; j < want.size(); ++j) w += (j ? ", " : "") + std::to_string(want[j]);
      throw py::value_error(name + " must have shape " + dims + " = " + w + (want.size() == 1 ? ",)" : ")") +
                            ", got " + shape_str(a));
    }
}

void mine_update(const py::dict& state, const py::handle& acts_obj, const py::handle& positions_obj,
                 const py::handle& edges_obj, const py::handle& strata_obj, int64_t neuron_offset, uint32_t seed,
                 int threads) {
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = hardware threads), got " + std::to_string(threads));
  auto field = [&](const char* key) -> py::handle {
    if (!state.contains(key)) throw py::value_error(std::string("state is missing '") + key + "'");
    return state[key];
  };
  auto name = [](const char* key) { return std::string("state['") + key + "']"; };
  py::array topk_v = checked<float>(field("topk_values"), name("topk_values"), 2, true);
  py::array topk_p = checked<int64_t>(field("topk_positions"), name("topk_positions"), 2, true);
  py::array bot_v = checked<float>(field("bottomk_values"), name("bottomk_values"), 2, true);
  py::array bot_p = checked<int64_t>(field("bottomk_positions"), name("bottomk_positions"), 2, true);
  py::array count = checked<int64_t>(field("count"), name("count"), 1, true);
  py::array mean = checked<double>(field("mean"), name("mean"), 1, true);
  py::array m2 = checked<double>(field("m2"), name("m2"), 1, true);
  py::array vmin = checked<float>(field("min"), name("min"), 1, true);
  py::array vmax = checked<float>(field("max"), name("max"), 1, true);
  py::array positive = checked<int64_t>(field("positive"), name("positive"), 1, true);
  py::array nonfinite = checked<int64_t>(field("nonfinite"), name("nonfinite"), 1, true);
  py::array hist = checked<int64_t>(field("hist"), name("hist"), 2, true);
  py::array samp_v = checked<float>(field("sample_values"), name("sample_values"), 3, true);
  py::array samp_p = checked<int64_t>(field("sample_positions"), name("sample_positions"), 3, true);
  py::array samp_q = checked<int64_t>(field("sample_priority"), name("sample_priority"), 3, true);
  py::array acts = checked<float>(acts_obj, "acts", 2, false);
  py::array positions = checked<int64_t>(positions_obj, "positions", 1, false);
  py::array edges = checked<float>(edges_obj, "edges", 1, false);
  py::array strata = checked<int64_t>(strata_obj, "strata", 1, false);

  const py::ssize_t n = count.shape(0), k = topk_v.shape(1), kb = bot_v.shape(1), b = hist.shape(1);
  const py::ssize_t s = samp_v.shape(1), r = samp_v.shape(2), t = acts.shape(0);
  expect_shape(topk_v, name("topk_values"), {n, k}, "(N, K)");
  expect_shape(topk_p, name("topk_positions"), {n, k}, "(N, K)");
  expect_shape(bot_v, name("bottomk_values"), {n, kb}, "(N, Kb)");
  expect_shape(bot_p, name("bottomk_positions"), {n, kb}, "(N, Kb)");
  for (auto& [arr, key] : {std::pair<py::array&, const char*>{mean, "mean"}, {m2, "m2"}, {vmin, "min"},
                            {vmax, "max"}, {positive, "positive"}, {nonfinite, "nonfinite"}})
    expect_shape(arr, name(key), {n}, "(N,)");
  expect_shape(hist, name("hist"), {n, b}, "(N, B)");
  expect_shape(samp_v, name("sample_values"), {n, s, r}, "(N, S, R)");
  expect_shape(samp_p, name("sample_positions"), {n, s, r}, "(N, S, R)");
  expect_shape(samp_q, name("sample_priority"), {n, s, r}, "(N, S, R)");
  expect_shape(acts, "acts", {t, n}, "(T, N)");
  expect_shape(positions, "positions", {t}, "(T,)");
  if (b < 1) throw py::value_error("state['hist'] must have at least one bin");
  if (s < 1) throw py::value_error("state['sample_values'] must have at least one stratum");
  expect_shape(edges, "edges", {b - 1}, "(B - 1,)");
  expect_shape(strata, "strata", {b}, "(B,)");

  neuronscope::MineStats st{
      static_cast<float*>(topk_v.mutable_data()),   static_cast<int64_t*>(topk_p.mutable_data()),
      static_cast<float*>(bot_v.mutable_data()),    static_cast<int64_t*>(bot_p.mutable_data()),
      static_cast<int64_t*>(count.mutable_data()),  static_cast<double*>(mean.mutable_data()),
      static_cast<double*>(m2.mutable_data()),      static_cast<float*>(vmin.mutable_data()),
      static_cast<float*>(vmax.mutable_data()),     static_cast<int64_t*>(positive.mutable_data()),
      static_cast<int64_t*>(nonfinite.mutable_data()), static_cast<int64_t*>(hist.mutable_data()),
      static_cast<float*>(samp_v.mutable_data()),   static_cast<int64_t*>(samp_p.mutable_data()),
      static_cast<int64_t*>(samp_q.mutable_data())};
  neuronscope::MineShape shape{n, k, kb, b, s, r};
  neuronscope::MineGrid grid{static_cast<const float*>(edges.data()), static_cast<const int64_t*>(strata.data())};
  neuronscope::MineBatch batch{static_cast<const float*>(acts.data()), static_cast<const int64_t*>(positions.data()),
                               t, neuron_offset, seed};
  py::gil_scoped_release release;  // the arrays stay alive: their handles are held above
  neuronscope::mine_update(st, shape, grid, batch, threads);
}

}  // namespace mine_binding

PYBIND11_MODULE(_core, m) {
  m.doc() = "neuronscope compiled core";
  m.def("build_info", &neuronscope::build_info, "Compiler and C++ standard of the compiled core.");
  m.def("hardware_threads", &neuronscope::hardware_threads, "Hardware threads available (>= 1).");

  m.def("hierarchical", &hierarchical, py::arg("features"), py::arg("offsets"), py::kw_only(),
        py::arg("weights") = py::none(), py::arg("metric") = "cosine", py::arg("precision") = "float32",
        py::arg("criterion") = "auto", py::arg("threshold") = 0.0, py::arg("n_clusters") = 2,
        py::arg("max_clusters") = 8, py::arg("min_silhouette") = 0.25, py::arg("n_threads") = 0,
        "Batched average-linkage clustering; returns (labels, n_clusters, silhouette, linkage, linkage_offsets).");
  m.def("cut_linkage", &cut_linkage, py::arg("linkage"), py::arg("offsets"), py::kw_only(),
        py::arg("criterion") = "distance", py::arg("threshold") = 0.0, py::arg("n_clusters") = 2,
        py::arg("n_threads") = 0, "Flat clusters of batched linkage matrices; returns (labels, n_clusters).");
  m.def("silhouette", &silhouette, py::arg("features"), py::arg("offsets"), py::arg("labels"), py::kw_only(),
        py::arg("metric") = "cosine", py::arg("precision") = "float64", py::arg("n_threads") = 0,
        "Mean silhouette per problem (NaN where undefined).");
  m.def("pdist", &pdist, py::arg("features"), py::arg("offsets"), py::kw_only(), py::arg("metric") = "cosine",
        py::arg("precision") = "float32", py::arg("n_threads") = 0,
        "Condensed pairwise distances of every problem, concatenated.");
  m.def("kmeans", &kmeans, py::arg("features"), py::arg("offsets"), py::arg("n_clusters"), py::kw_only(),
        py::arg("weights") = py::none(), py::arg("metric") = "euclidean", py::arg("init") = py::none(),
        py::arg("n_init") = 3, py::arg("max_iter") = 100, py::arg("tol") = 1e-4, py::arg("seed") = 0,
        py::arg("n_threads") = 0, "Batched weighted k-means; returns (labels, centroids, inertia, n_iter).");
  m.def("simd_level", [] { return std::string(nc::simd_name(nc::active_simd())); },
        "Kernel family in use: 'generic', 'avx2' or 'avx512'.");
  m.def("detected_simd_level", [] { return std::string(nc::simd_name(nc::detected_simd())); },
        "Widest kernel family this CPU supports.");
  m.def("set_simd_level", [](const std::string& name) { nc::set_active_simd(nc::parse_simd(name)); },
        py::arg("name"), "Select the kernel family (for tests and benchmarks).");
  m.def("mine_update", &mine_binding::mine_update, py::arg("state"), py::arg("acts"), py::arg("positions"),
        py::arg("edges"), py::arg("strata"), py::arg("neuron_offset"), py::arg("seed"), py::arg("threads") = 0,
        "Folds acts (T, N) float32 at positions (T,) int64 into the LayerStats arrays of `state` (name -> "
        "C-contiguous writable numpy array) in place; edges (B - 1,) float32 and strata (B,) int64 are "
        "spec.hist_edges / spec.bin_strata, seed is cfg.seed & 0xFFFFFFFF. Releases the GIL; threads 0 = all.");
}
