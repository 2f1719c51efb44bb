#include "core/threads.h"

#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace prefmix {
namespace {
int g_threads = 0;
void (*g_torch_threads)(int) = nullptr;
}  // namespace

void SetThreads(int n) {
  g_threads = n;
  omp_set_num_threads(n);
  if (g_torch_threads) g_torch_threads(n);  // torch's own default here is 1
  // Torch's GEMMs run in OpenBLAS, whose own thread pool (default: all cores) spins in
  // sched_yield between calls; many small GEMMs (vpl) then spend more time yielding than
  // computing on a busy machine. Looked up at run time: present only when OpenBLAS is loaded.
  using SetFn = void (*)(int);
  if (auto* f = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

void SetTorchThreadsHook(void (*fn)(int)) {
  g_torch_threads = fn;
  if (fn && g_threads > 0) fn(g_threads);
}

int GetThreads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

ScopedThreads::ScopedThreads(int n) : before_(GetThreads()) { SetThreads(std::max(n, 1)); }
ScopedThreads::~ScopedThreads() { SetThreads(before_); }

int ThreadsForStepFlops(double flops) {
  const int all = GetThreads();
  if (!(flops >= kStepFlopsPerThread)) return 1;  // also NaN
  const double n = std::floor(flops / kStepFlopsPerThread);
  return n >= all ? all : std::max(1, static_cast<int>(n));
}

namespace {
double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

AdaptiveThreads::AdaptiveThreads(int probe, int period)
    : threads_(GetThreads()), probe_(std::max(probe, 1)), period_(std::max(period, 2 * probe)) {}

AdaptiveThreads::~AdaptiveThreads() { omp_set_num_threads(threads_); }

void AdaptiveThreads::Begin() {
  if (threads_ <= 1) return;
  // Within a period: [0, probe) all threads, [probe, 2 probe) one, then the faster.
  const int k = i_ % period_;
  if (k == 0) t_par_ = t_ser_ = 0;
  current_ = k < probe_ ? threads_ : k < 2 * probe_ ? 1 : (choose_serial_ ? 1 : threads_);
  omp_set_num_threads(current_);
  start_ = NowSeconds();
}

void AdaptiveThreads::End() {
  if (threads_ <= 1) return;
  const double t = NowSeconds() - start_;
  const int k = i_ % period_;
  if (k < probe_)
    t_par_ += t;
  else if (k < 2 * probe_)
    t_ser_ += t;
  if (k == 2 * probe_ - 1) choose_serial_ = t_ser_ < t_par_;
  (current_ > 1 ? parallel_ : serial_) += 1;
  ++i_;
}

namespace {
std::atomic<bool> g_cancel{false};
/// steady_clock nanoseconds of the deadline; 0: none.
std::atomic<int64_t> g_deadline{0};
int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void RequestCancel() { g_cancel.store(true); }
void ClearCancel() { g_cancel.store(false); }
void SetDeadline(double seconds) {
  g_deadline.store(NowNs() + std::max<int64_t>(1, static_cast<int64_t>(seconds * 1e9)));
}
void ClearDeadline() { g_deadline.store(0); }
bool DeadlinePassed() {
  const int64_t d = g_deadline.load(std::memory_order_relaxed);
  return d != 0 && NowNs() >= d;
}
void ThrowIfCancelled() {
  if (g_cancel.load(std::memory_order_relaxed) || DeadlinePassed()) throw Cancelled();
}

}  // namespace prefmix
