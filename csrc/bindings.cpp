// The only pybind11 file: converts types and errors, holds no algorithm.
#include <pybind11/pybind11.h>

#include "info.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "neuronscope compiled core";
  m.def("build_info", &neuronscope::build_info, "Compiler and C++ standard of the compiled core.");
  m.def("hardware_threads", &neuronscope::hardware_threads, "Hardware threads available (>= 1).");
}
