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
