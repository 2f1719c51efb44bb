#pragma once
// One place that sets the worker thread count for OpenMP and LibTorch, and the cooperative
// cancellation of long work (training loops check it once per epoch).
#include <exception>

namespace prefmix {
/// Sets OpenMP's and torch's intra-op thread counts.
void SetThreads(int n);
/// Called by the LibTorch module (core/torch/module.h) when it is loaded: `fn` sets torch's
/// intra-op thread count; it is applied at once to the count already set, and by every later
/// SetThreads.
void SetTorchThreadsHook(void (*fn)(int));
/// The thread count last set (default 2... or OpenMP's max).
int GetThreads();

/// Sets the thread count (SetThreads) for a scope and restores the previous count on exit.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int before_;
};

/// Floating-point operations a training step must have per thread before a torch step is split
/// over one more thread. Torch splits each op over its pool; below this the pool's wake-ups and
/// barriers (tens of microseconds an op, far more when another job holds a core) cost more than
/// the split saves. On SUSHI-B pal-b's steps have under 10 MFLOP and ran 12 % slower with two
/// threads.
constexpr double kStepFlopsPerThread = 1e8;
/// The threads worth using, at most GetThreads(), for steps of `flops` each: one per
/// kStepFlopsPerThread, at least one. A fixed rule (not a timing), so a fit's result depends on
/// the work's shape and never on the machine's load.
int ThreadsForStepFlops(double flops);

/// Chooses, while a loop of alike iterations runs (a fit's steps), between the thread count set
/// and one thread, by timing both: fine-grained parallel loops gain on idle cores and lose when
/// another job holds one (every barrier then waits for a descheduled thread). The first
/// `probe` iterations run with the threads, the next `probe` with one; the faster setting runs
/// until `period` iterations later, when both are timed again. Use only where the thread count
/// does not change the result (per-item work, fixed-order sums). Restores the count on
/// destruction. With one thread set it does nothing.
class AdaptiveThreads {
 public:
  explicit AdaptiveThreads(int probe = 2, int period = 40);
  ~AdaptiveThreads();
  AdaptiveThreads(const AdaptiveThreads&) = delete;
  AdaptiveThreads& operator=(const AdaptiveThreads&) = delete;
  /// Before an iteration: sets OpenMP's thread count for it.
  void Begin();
  /// After it: records its time.
  void End();
  /// Iterations run with one thread and with all, so far (for reports).
  int serial_iterations() const { return serial_; }
  int parallel_iterations() const { return parallel_; }

 private:
  int threads_, probe_, period_;
  int i_ = 0, serial_ = 0, parallel_ = 0, current_ = 1;
  double t_par_ = 0, t_ser_ = 0;
  bool choose_serial_ = false;
  double start_ = 0;
};

/// Thrown by ThrowIfCancelled() after RequestCancel(): the work stops at its next check and
/// leaves its inputs as they were (a fit assigns its result only when it completes).
struct Cancelled : std::exception {
  const char* what() const noexcept override { return "cancelled"; }
};
/// Asks the running work to stop (any thread; e.g. Python's Ctrl-C).
void RequestCancel();
/// Clears a request (before new work starts).
void ClearCancel();
/// A deadline `seconds` from now (`--model auto`'s budget): once it has passed,
/// ThrowIfCancelled() throws as if a cancel had been requested. One deadline at a time.
void SetDeadline(double seconds);
void ClearDeadline();
/// True once a deadline is set and has passed.
bool DeadlinePassed();
/// Throws Cancelled when a cancel was requested or the deadline has passed. Training loops call it
/// once per epoch.
void ThrowIfCancelled();
}  // namespace prefmix
