// Work sharing over independent tasks with plain std::thread (no OpenMP dependency).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace neuronscope::cluster {

// Threads to use: `requested` <= 0 means every hardware thread; never more threads than tasks.
inline int resolve_threads(int requested, std::size_t n_tasks) {
  int n = requested;
  if (n <= 0) {
    unsigned hw = std::thread::hardware_concurrency();
    n = hw == 0 ? 1 : static_cast<int>(hw);
  }
  if (n_tasks < static_cast<std::size_t>(n)) n = static_cast<int>(std::max<std::size_t>(n_tasks, 1));
  return n;
}

// Runs fn(task, worker) for every task in [0, n_tasks) on up to n_threads threads, the caller
// being worker 0. Tasks are claimed in increasing order, so when tasks fail the exception of the
// lowest failing task is rethrown: the error a user sees does not depend on the thread count.
template <class Fn>
void parallel_for(std::size_t n_tasks, int n_threads, Fn&& fn) {
  if (n_tasks == 0) return;
  n_threads = resolve_threads(n_threads, n_tasks);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::size_t failed_task = n_tasks;
  std::exception_ptr error;
  auto work = [&](int worker) {
    while (!failed.load(std::memory_order_relaxed)) {
      std::size_t task = next.fetch_add(1);
      if (task >= n_tasks) return;
      try {
        fn(task, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (task < failed_task) {
          failed_task = task;
          error = std::current_exception();
        }
        failed.store(true);
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(n_threads - 1));
  for (int w = 1; w < n_threads; ++w) {
    try {
      threads.emplace_back(work, w);
    } catch (const std::system_error&) {
      break;  // the OS refused a thread: the ones we have share the remaining tasks
    }
  }
  work(0);
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace neuronscope::cluster
