#pragma once
// CUDA kernels of the user step on raw device pointers (core/userstep/user_step_raw.h).
// Dependency-free (CUDA runtime + core/userstep/math.h), so that the device check in bench/device/
// builds on a GPU machine without Debian packages.
//  - loglik (em-bt's E-step; one pass, memory-bound): one thread per (user, component). A block
//    holds U_b = floor(256 / K) users; thread (u, k) sums c_j log sigma(q_jk) over the user's
//    pairs, the block's shared memory gives each user's max and normaliser, and each thread
//    writes its own posterior entry (coalesced). log sigma is computed in single precision and
//    summed in float with Kahan compensation. The library's kernel, `direct`, reads q from
//    global memory (the K threads of a user read each row together) and computes log sigma
//    with the hardware exp2 and log2 (math::LogSigmoidFast). Device-check variants
//    (LoglikKernel): `staged` first copies the block's rows of q (contiguous: its users' pairs
//    are) into shared memory with coalesced loads, tile by tile; `poly` computes log sigma with
//    one exp2 and a polynomial log1p (math::LogSigmoidPoly). The exact double-precision formula
//    (the CPU's) is kept for comparison (`exact_loglik`).
//  - linear (iterative): one thread per user running the CPU loop's solver
//    (math::SolveLinearSimplexWith), instantiated with scratch arrays of capacity 4, 8, 16 or 32
//    (the smallest that holds K). The library's kernel, `local`, keeps all scratch in the
//    thread's local memory. Device-check variants (LinearKernel): `shared`, the two gradients
//    and two packed Hessians (updated for every pair of every pass) in shared memory,
//    interleaved by thread (math::Strided), for K <= 16. A variant replaces the library's
//    kernel only once bench/device_check.sh has measured it faster with parity.
//  - mixture / normalized: one thread per user running the CPU loop's code.
#include <cuda_runtime.h>

#include "core/userstep/math.h"
#include "core/userstep/user_step_raw.h"

namespace prefmix::cuda {

/// Threads per block of the loglik kernel (rounded down to a multiple of K).
constexpr int kLoglikBlock = 256;
/// Threads per block of the per-thread kernels.
constexpr int kThreadsPerBlock = 64;

/// The end of the loglik kernels: thread (lu, c) holds l = user lu's log-likelihood of component
/// c; the block's shared memory gives each user's max and normaliser; every thread writes its
/// posterior entry.
template <bool kExact>
__device__ inline void LoglikFinish(const raw::UserStepArgs& a, double* sh, int users_per_block,
                                    int lu, int c, int64_t u, bool active, double l) {
  double* mx = sh + blockDim.x;
  double* zs = mx + users_per_block;
  int* best = reinterpret_cast<int*>(zs + users_per_block);
  const int K = a.K, t = threadIdx.x;
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

/// log sigma in single precision: the hardware exp2 and log2 (kPoly false) or one exp2 and a
/// polynomial log1p (kPoly true).
template <bool kPoly>
__device__ inline float LogSigmoidF(float x) {
  return kPoly ? math::LogSigmoidPoly(x) : math::LogSigmoidFast(x);
}

/// The direct loglik kernel: thread (u, k) reads its column of the user's rows from global
/// memory.
template <bool kExact, bool kPoly>
__global__ void LoglikColumnKernel(raw::UserStepArgs a, int users_per_block) {
  extern __shared__ double
      sh[];  // [blockDim.x] log-likelihoods, [U_b] max, [U_b] sum, [U_b] argmax
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
        const float v = LogSigmoidF<kPoly>(__ldg(qc + j * K));
        const float y = (wt ? __ldg(wt + j) * v : v) - comp, t2 = sum + y;
        comp = (t2 - sum) - y;
        sum = t2;
      }
      l += sum;
    }
  }
  LoglikFinish<kExact>(a, sh, users_per_block, lu, c, u, active, l);
}

/// The staged loglik kernel: the block's rows of q (and weights) pass through shared memory in
/// tiles of `tile_rows` rows, copied with coalesced loads; thread (u, k) then sums its column
/// over the rows of its user in the tile, in the same order as the direct kernel.
template <bool kPoly>
__global__ void LoglikStagedKernel(raw::UserStepArgs a, int users_per_block, int tile_rows) {
  extern __shared__ double sh[];  // LoglikFinish's arrays, then the tile: q rows, weights
  const int K = a.K, t = threadIdx.x, lu = t / K, c = t - lu * K;
  const size_t head =
      blockDim.x * sizeof(double) + users_per_block * (2 * sizeof(double) + sizeof(int)) + 15;
  float* tq = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(sh) + head) & ~uintptr_t{15});
  float* tw = tq + static_cast<size_t>(tile_rows) * K;
  const int64_t u0 = static_cast<int64_t>(blockIdx.x) * users_per_block;
  const int64_t u_end = u0 + users_per_block < a.n_users ? u0 + users_per_block : a.n_users;
  const int64_t u = u0 + lu;
  const bool active = lu < users_per_block && u < a.n_users;
  const int64_t p0 = a.offsets[u0], p1 = a.offsets[u_end];
  const int64_t b = active ? a.offsets[u] : 0, e = active ? a.offsets[u + 1] : 0;
  float sum = 0.0f, comp = 0.0f;
  for (int64_t r0 = p0; r0 < p1; r0 += tile_rows) {
    const int64_t r1 = r0 + tile_rows < p1 ? r0 + tile_rows : p1;
    const int nf = static_cast<int>((r1 - r0) * K);
    const float* src = a.q + r0 * K;
#pragma unroll 4
    for (int i = t; i < nf; i += blockDim.x) tq[i] = __ldg(src + i);
    if (a.weight)
      for (int i = t; i < static_cast<int>(r1 - r0); i += blockDim.x)
        tw[i] = __ldg(a.weight + r0 + i);
    __syncthreads();
    if (active) {
      const int64_t jb = b > r0 ? b : r0, je = e < r1 ? e : r1;
      for (int64_t j = jb; j < je; ++j) {
        const float v = LogSigmoidF<kPoly>(tq[(j - r0) * K + c]);
        const float y = (a.weight ? tw[j - r0] * v : v) - comp, t2 = sum + y;
        comp = (t2 - sum) - y;
        sum = t2;
      }
    }
    __syncthreads();
  }
  const double l = active ? (a.prior ? a.prior[c] : 0.0) + static_cast<double>(sum) : 0.0;
  LoglikFinish<false>(a, sh, users_per_block, lu, c, u, active, l);
}

template <int KM>
__global__ void LinearThreadKernel(raw::UserStepArgs a) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u < a.n_users) raw::SolveLinearUser<KM>(a, u);
}

/// Doubles of shared scratch per thread of LinearSharedKernel: two gradients, two Hessians.
__host__ __device__ constexpr int LinearSharedDoubles(int K) { return 2 * K + K * (K + 1); }

/// The linear link with each thread's gradients and Hessians in shared memory, interleaved by
/// thread: element i of thread t's array at base + i * blockDim.x + t.
template <int KM>
__global__ void LinearSharedKernel(raw::UserStepArgs a) {
  extern __shared__ double sh[];
  const int T = blockDim.x, t = threadIdx.x, K = a.K, tri = K * (K + 1) / 2;
  const int64_t u = blockIdx.x * static_cast<int64_t>(T) + t;
  if (u >= a.n_users) return;
  using S = math::Strided<double>;
  const S g0{sh + t, T}, g1{sh + K * T + t, T}, H0{sh + 2 * K * T + t, T},
      H1{sh + (2 * K + tri) * T + t, T};
  raw::SolveLinearUserWith<KM, S, S>(a, u, g0, g1, H0, H1);
}

__global__ void MixtureThreadKernel(raw::UserStepArgs a) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u < a.n_users) raw::SolveMixtureUser(a, u);
}

__global__ void NormalizedThreadKernel(raw::UserStepArgs a) {
  const int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (u < a.n_users) raw::SolveNormalizedUser(a, u);
}

/// The gaussian link: a thread per user of [u0, u0 + count), each with its slot of a.work.
__global__ void GaussianThreadKernel(raw::UserStepArgs a, int64_t u0, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < count) raw::SolveGaussianUser(a, u0 + i, a.work + i * raw::GaussianUserWorkDoubles(a.K));
}

/// The E-step kernel: `direct` (global loads, hardware log2; the library's, measured on a GPU)
/// or `staged` (shared-memory tiles), each with either log sigma (device-check variants).
enum class LoglikKernel { kDirect, kDirectPoly, kStaged, kStagedPoly };
/// The linear-link kernel: `shared` keeps the per-thread Hessians in shared memory (K <= 16;
/// 32 or 64 threads per block), `local` in local memory; `auto` is the library's choice.
enum class LinearKernel { kAuto, kLocal, kShared32, kShared64 };

/// Kernel choices; the defaults are the library's.
struct LaunchOptions {
  bool exact_loglik = false;  ///< the double-precision log sigma (the CPU's formula)
  LoglikKernel loglik = LoglikKernel::kDirect;
  LinearKernel linear = LinearKernel::kAuto;
};

/// Rows of q per shared-memory tile of the staged loglik kernel (8,192 floats).
inline int LoglikTileRows(int K) { return 8192 / K > 0 ? 8192 / K : 1; }

/// Launches the user step for device-resident args on `stream` (no synchronisation).
inline cudaError_t LaunchUserStep(const raw::UserStepArgs& a, cudaStream_t stream = 0,
                                  const LaunchOptions& o = LaunchOptions()) {
  if (a.n_users <= 0) return cudaSuccess;
  const unsigned per_thread_blocks =
      static_cast<unsigned>((a.n_users + kThreadsPerBlock - 1) / kThreadsPerBlock);
  switch (a.link) {
    case raw::kLoglik: {
      const int upb = kLoglikBlock / a.K > 0 ? kLoglikBlock / a.K : 1;
      const unsigned blocks = static_cast<unsigned>((a.n_users + upb - 1) / upb);
      const size_t shmem = static_cast<size_t>(upb) * a.K * sizeof(double) +
                           static_cast<size_t>(upb) * (2 * sizeof(double) + sizeof(int));
      const bool staged =
          o.loglik == LoglikKernel::kStaged || o.loglik == LoglikKernel::kStagedPoly;
      const bool poly =
          o.loglik == LoglikKernel::kDirectPoly || o.loglik == LoglikKernel::kStagedPoly;
      if (o.exact_loglik) {
        LoglikColumnKernel<true, false><<<blocks, upb * a.K, shmem, stream>>>(a, upb);
      } else if (staged) {
        const int rows = LoglikTileRows(a.K);
        const size_t tile = 16 + static_cast<size_t>(rows) * (a.K + 1) * sizeof(float);
        if (poly)
          LoglikStagedKernel<true><<<blocks, upb * a.K, shmem + tile, stream>>>(a, upb, rows);
        else
          LoglikStagedKernel<false><<<blocks, upb * a.K, shmem + tile, stream>>>(a, upb, rows);
      } else if (poly) {
        LoglikColumnKernel<false, true><<<blocks, upb * a.K, shmem, stream>>>(a, upb);
      } else {
        LoglikColumnKernel<false, false><<<blocks, upb * a.K, shmem, stream>>>(a, upb);
      }
      break;
    }
    case raw::kMixture:
      MixtureThreadKernel<<<per_thread_blocks, kThreadsPerBlock, 0, stream>>>(a);
      break;
    case raw::kNormalized:
      NormalizedThreadKernel<<<per_thread_blocks, kThreadsPerBlock, 0, stream>>>(a);
      break;
    case raw::kGaussian: {
      if (!a.work || a.work_users <= 0) return cudaErrorInvalidValue;
      // Chunks of work_users users share the scratch; kernels on one stream run in order.
      for (int64_t u0 = 0; u0 < a.n_users; u0 += a.work_users) {
        const int64_t count = a.n_users - u0 < a.work_users ? a.n_users - u0 : a.work_users;
        const unsigned blocks =
            static_cast<unsigned>((count + kThreadsPerBlock - 1) / kThreadsPerBlock);
        GaussianThreadKernel<<<blocks, kThreadsPerBlock, 0, stream>>>(a, u0, count);
      }
      break;
    }
    default: {
      LinearKernel kind = o.linear;
      // The library's choice is `local`, the kernel measured on a GPU (bench/RESULTS.md 8.0);
      // the shared variants are measured by bench/device_check.sh before they can replace it.
      if (kind == LinearKernel::kAuto) kind = LinearKernel::kLocal;
      if (kind != LinearKernel::kLocal && a.K > 16) return cudaErrorInvalidValue;
      if (kind == LinearKernel::kLocal) {
        raw::WithLinearCapacity(a.K, [&](auto km) {
          LinearThreadKernel<decltype(km)::value>
              <<<per_thread_blocks, kThreadsPerBlock, 0, stream>>>(a);
        });
        break;
      }
      const int T = kind == LinearKernel::kShared64 ? 64 : 32;
      const unsigned blocks = static_cast<unsigned>((a.n_users + T - 1) / T);
      const size_t shmem = static_cast<size_t>(LinearSharedDoubles(a.K)) * sizeof(double) * T;
      cudaError_t err = cudaSuccess;
      raw::WithLinearCapacity(a.K, [&](auto km) {
        constexpr int KM = decltype(km)::value;
        if constexpr (KM <= 16) {
          err = cudaFuncSetAttribute(LinearSharedKernel<KM>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(shmem));
          if (err == cudaSuccess) LinearSharedKernel<KM><<<blocks, T, shmem, stream>>>(a);
        }
      });
      if (err != cudaSuccess) return err;
    }
  }
  return cudaGetLastError();
}

}  // namespace prefmix::cuda
