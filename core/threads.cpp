#include "core/threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <omp.h>

#include <atomic>

namespace prefmix {
namespace {
int g_threads = 0;
}

void SetThreads(int n) {
  g_threads = n;
  omp_set_num_threads(n);
  at::set_num_threads(n);  // torch's own default here is 1
  // Torch's GEMMs run in OpenBLAS, whose own thread pool (default: all cores) spins in
  // sched_yield between calls; many small GEMMs (vpl) then spend more time yielding than
  // computing on a busy machine. Looked up at run time: present only when OpenBLAS is loaded.
  using SetFn = void (*)(int);
  if (auto* f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

int GetThreads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

namespace {
std::atomic<bool> g_cancel{false};
}  // namespace

void RequestCancel() { g_cancel.store(true); }
void ClearCancel() { g_cancel.store(false); }
void ThrowIfCancelled() {
  if (g_cancel.load(std::memory_order_relaxed)) throw Cancelled();
}

}  // namespace prefmix
