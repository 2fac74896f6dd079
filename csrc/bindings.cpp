// The only pybind11 file: converts types and errors, holds no algorithm.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "info.hpp"
#include "mine_cpu.hpp"

namespace py = pybind11;

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
  m.def("mine_update", &mine_binding::mine_update, py::arg("state"), py::arg("acts"), py::arg("positions"),
        py::arg("edges"), py::arg("strata"), py::arg("neuron_offset"), py::arg("seed"), py::arg("threads") = 0,
        "Folds acts (T, N) float32 at positions (T,) int64 into the LayerStats arrays of `state` (name -> "
        "C-contiguous writable numpy array) in place; edges (B - 1,) float32 and strata (B,) int64 are "
        "spec.hist_edges / spec.bin_strata, seed is cfg.seed & 0xFFFFFFFF. Releases the GIL; threads 0 = all.");
}
