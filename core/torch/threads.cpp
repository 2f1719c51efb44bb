// Part of the LibTorch module: torch's intra-op thread count follows SetThreads.
#include "core/threads.h"

#include <ATen/Parallel.h>

namespace prefmix::torchglue {
namespace {
void SetTorchThreads(int n) { at::set_num_threads(n); }
const bool kHooked = (SetTorchThreadsHook(&SetTorchThreads), true);
}  // namespace
}  // namespace prefmix::torchglue
