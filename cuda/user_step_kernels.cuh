#pragma once
// CUDA kernels of the user step on raw device pointers (core/user_step_raw.h). Dependency-free
// (CUDA runtime + core/math.h), so that the device check in bench/device/ builds on a GPU
// machine without Debian packages.
//  - loglik (em-bt's E-step; one pass, memory-bound): one thread per (user, component). A block
//    holds U_b = floor(256 / K) users; thread (u, k) sums c_j log sigma(q_jk) over the user's
//    pairs (the K threads of a user read each row of q together), the block's shared memory
//    gives each user's max and normaliser, and each thread writes its own posterior entry
//    (coalesced). log sigma is computed in single precision with the hardware exp2 / log2
//    (math::LogSigmoidFast) and summed in float with Kahan compensation; the exact
//    double-precision variant (the CPU's formula) is kept for comparison (`exact_loglik`).
//  - linear (iterative, compute-bound): one thread per user running raw::SolveLinearUser, the
//    CPU loop's own code, instantiated with scratch arrays of capacity 4, 8, 16 or 32 (the
//    smallest that holds K), so that the per-thread state stays small.
//  - mixture / normalized: one thread per user running the CPU loop's code.
#include <cuda_runtime.h>

#include "core/math.h"
#include "core/user_step_raw.h"

namespace prefmix::cuda {

/// Threads per block of the loglik kernel (rounded down to a multiple of K).
constexpr int kLoglikBlock = 256;
/// Threads per block of the per-thread kernels.
constexpr int kThreadsPerBlock = 64;

template <bool kExact>
__global__ void LoglikColumnKernel(raw::UserStepArgs a, int users_per_block) {
  extern __shared__ double
      sh[];  // [blockDim.x] log-likelihoods, [U_b] max, [U_b] sum, [U_b] argmax
  double* mx = sh + blockDim.x;
  double* zs = mx + users_per_block;
  int* best = reinterpret_cast<int*>(zs + users_per_block);
  const int K = a.K, t = threadIdx.x, lu = t / K, c = t - lu * K;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * users_per_block + lu;
  const bool active = lu < users_per_block && u < a.n_users;
  double l = 0;
  if (active) {
    const int64_t b = a.offsets[u], n = a.offsets[u + 1] - b;
    const float* qc = a.q + b * K + c;
    const float* wt = a.weight ? a.weight + b : nullptr;
    l = a.prior ? a.prior[c] : 0.0;
    if (kExact) {
      for (int64_t j = 0; j < n; ++j)
        l += (wt ? static_cast<double>(__ldg(wt + j)) : 1.0) * math::LogSigmoid(__ldg(qc + j * K));
    } else {  // compensated (Kahan) float sum: float adds, about double's accuracy for k <= 1e4
      float sum = 0.0f, comp = 0.0f;
      for (int64_t j = 0; j < n; ++j) {
        const float v = math::LogSigmoidFast(__ldg(qc + j * K));
        const float y = (wt ? __ldg(wt + j) * v : v) - comp, t2 = sum + y;
        comp = (t2 - sum) - y;
        sum = t2;
      }
      l += sum;
    }
  }
  sh[t] = l;
  __syncthreads();
  if (active && c == 0) {
    const double* v = sh + lu * K;
    double m = v[0];
    int bi = 0;
    for (int k = 1; k < K; ++k)
      if (v[k] > m) {  // ties go to the lowest index, as math::Posterior
        m = v[k];
        bi = k;
      }
    double z = 0;
    for (int k = 0; k < K; ++k)
      z += kExact ? exp(v[k] - m) : static_cast<double>(__expf(static_cast<float>(v[k] - m)));
    mx[lu] = m;
    zs[lu] = z;
    best[lu] = bi;
    a.objective[u] = m + log(z);
    if (a.residual) a.residual[u] = 0;
    if (a.iterations) a.iterations[u] = 0;
  }
  __syncthreads();
  if (active) {
    if (a.loglik) a.loglik[u * K + c] = static_cast<float>(l);
    double p;
    if (a.hard)
      p = c == best[lu] ? 1.0 : 0.0;
    else
      p = (kExact ? exp(l - mx[lu]) : static_cast<double>(__expf(static_cast<float>(l - mx[lu])))) /
          zs[lu];
    a.latent[u * K + c] = static_cast<float>(p);
  }
}

template <int KM>
__global__ void LinearThreadKernel(raw::UserStepArgs a) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u < a.n_users) raw::SolveLinearUser<KM>(a, u);
}

__global__ void MixtureThreadKernel(raw::UserStepArgs a) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u < a.n_users) raw::SolveMixtureUser(a, u);
}

__global__ void NormalizedThreadKernel(raw::UserStepArgs a) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u < a.n_users) raw::SolveNormalizedUser(a, u);
}

/// Launches the user step for device-resident args on `stream` (no synchronisation).
/// `exact_loglik` selects the double-precision log sigma for the loglik link (slower; the
/// default single-precision one agrees to raw::kParityObjectiveTol).
inline cudaError_t LaunchUserStep(const raw::UserStepArgs& a, cudaStream_t stream = 0,
                                  bool exact_loglik = false) {
  if (a.n_users <= 0) return cudaSuccess;
  const unsigned per_thread_blocks =
      static_cast<unsigned>((a.n_users + kThreadsPerBlock - 1) / kThreadsPerBlock);
  switch (a.link) {
    case raw::kLoglik: {
      const int upb = kLoglikBlock / a.K > 0 ? kLoglikBlock / a.K : 1;
      const unsigned blocks = static_cast<unsigned>((a.n_users + upb - 1) / upb);
      const size_t shmem = static_cast<size_t>(upb) * a.K * sizeof(double) +
                           static_cast<size_t>(upb) * (2 * sizeof(double) + sizeof(int));
      if (exact_loglik)
        LoglikColumnKernel<true><<<blocks, upb * a.K, shmem, stream>>>(a, upb);
      else
        LoglikColumnKernel<false><<<blocks, upb * a.K, shmem, stream>>>(a, upb);
      break;
    }
    case raw::kMixture:
      MixtureThreadKernel<<<per_thread_blocks, kThreadsPerBlock, 0, stream>>>(a);
      break;
    case raw::kNormalized:
      NormalizedThreadKernel<<<per_thread_blocks, kThreadsPerBlock, 0, stream>>>(a);
      break;
    default:
      raw::WithLinearCapacity(a.K, [&](auto km) {
        LinearThreadKernel<decltype(km)::value>
            <<<per_thread_blocks, kThreadsPerBlock, 0, stream>>>(a);
      });
  }
  return cudaGetLastError();
}

}  // namespace prefmix::cuda
