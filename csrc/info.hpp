// Build information of the compiled core (pure C++, no Python headers).
#pragma once
#include <string>

namespace neuronscope {

// Compiler and standard the core was built with, for `neuronscope info` and bug reports.
std::string build_info();

// Hardware threads available to the multithreaded routines (>= 1).
int hardware_threads();

}  // namespace neuronscope
