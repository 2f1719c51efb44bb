#pragma once
// CUDA kernels of the user step on raw device pointers (core/user_step_raw.h). Dependency-free
// (CUDA runtime + core/math.h), so that the device check in bench/device/ builds on a GPU
// machine without Debian packages.
//  - loglik (em-bt's E-step; one pass, memory-bound): one warp per user. Lanes are split into
//    P = floor(32 / K) pair slots of K lanes; lane (p, k) sums c_j log sigma(q_jk) over the
//    user's pairs j = p, p + P, ..., so each step of the warp reads P consecutive rows of q
//    (P K consecutive floats: coalesced). The slots are summed in shared memory and the K
//    lanes of slot 0 form the posterior.
//  - linear / mixture / normalized (iterative, compute-bound, per-user state of K <= 32
//    doubles): one thread per user running raw::SolveUser, the same code as the CPU loop.
#include <cuda_runtime.h>

#include "core/math.h"
#include "core/user_step_raw.h"

namespace prefmix::cuda {

/// Warps per block of the loglik kernel.
constexpr int kWarpsPerBlock = 8;
/// Threads per block of the per-thread kernel.
constexpr int kThreadsPerBlock = 64;

__global__ void UserStepThreadKernel(raw::UserStepArgs a) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u < a.n_users) raw::SolveUser(a, u);
}

__global__ void LoglikWarpKernel(raw::UserStepArgs a) {
  __shared__ double part[kWarpsPerBlock][32];
  __shared__ double ll[kWarpsPerBlock][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t u = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (u >= a.n_users) return;  // the whole warp leaves together
  const int K = a.K, P = 32 / K, k = lane % K, p = lane / K;
  const int64_t b = a.offsets[u], e = a.offsets[u + 1];
  double acc = 0;
  if (p < P)
    for (int64_t j = b + p; j < e; j += P) {
      const double c = a.weight ? a.weight[j] : 1.0;
      acc += c * math::LogSigmoid(a.q[j * K + k]);
    }
  part[warp][lane] = acc;
  __syncwarp();
  if (lane < K) {
    double l = a.prior ? a.prior[lane] : 0.0;
    for (int s = 0; s < P; ++s) l += part[warp][s * K + lane];
    ll[warp][lane] = l;
  }
  __syncwarp();
  if (lane < K) {
    double v[math::kMaxK];
    for (int c = 0; c < K; ++c) v[c] = ll[warp][c];
    double m = v[0];
    for (int c = 1; c < K; ++c) m = v[c] > m ? v[c] : m;
    double z = 0;
    for (int c = 0; c < K; ++c) z += exp(v[c] - m);
    if (a.loglik) a.loglik[u * K + lane] = static_cast<float>(v[lane]);
    if (lane == 0) {
      a.objective[u] = m + log(z);
      if (a.residual) a.residual[u] = 0;
      if (a.iterations) a.iterations[u] = 0;
    }
    math::Posterior(v, K, a.hard != 0);
    a.latent[u * K + lane] = static_cast<float>(v[lane]);
  }
}

/// Launches the user step for device-resident args on `stream` (no synchronisation).
inline cudaError_t LaunchUserStep(const raw::UserStepArgs& a, cudaStream_t stream = 0) {
  if (a.n_users <= 0) return cudaSuccess;
  if (a.link == raw::kLoglik) {
    const int64_t blocks = (a.n_users + kWarpsPerBlock - 1) / kWarpsPerBlock;
    LoglikWarpKernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(a);
  } else {
    const int64_t blocks = (a.n_users + kThreadsPerBlock - 1) / kThreadsPerBlock;
    UserStepThreadKernel<<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace prefmix::cuda
