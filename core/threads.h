#pragma once
// One place that sets the worker thread count for OpenMP and LibTorch.
namespace prefmix {
/// Sets OpenMP's and torch's intra-op thread counts.
void SetThreads(int n);
/// The thread count last set (default 2... or OpenMP's max).
int GetThreads();
}  // namespace prefmix
