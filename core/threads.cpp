#include "core/threads.h"

#include <ATen/Parallel.h>
#include <omp.h>

namespace prefmix {
namespace {
int g_threads = 0;
}

void SetThreads(int n) {
  g_threads = n;
  omp_set_num_threads(n);
  at::set_num_threads(n);  // torch's own default here is 1
}

int GetThreads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

}  // namespace prefmix
