#include "info.hpp"

#include <sstream>
#include <thread>

namespace neuronscope {

std::string build_info() {
  std::ostringstream out;
#if defined(__clang__)
  out << "clang " << __clang_major__ << "." << __clang_minor__;
#elif defined(__GNUC__)
  out << "gcc " << __GNUC__ << "." << __GNUC_MINOR__;
#elif defined(_MSC_VER)
  out << "msvc " << _MSC_VER;
#else
  out << "unknown compiler";
#endif
  out << ", C++" << (__cplusplus / 100) % 100;
  return out.str();
}

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace neuronscope
