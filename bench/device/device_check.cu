// Dependency-free device check of the user step (issue 7): CPU vs CUDA parity for every link on
// fresh random inputs (K in {2, 10, 32}, k in {5, 20, 100}, ordinary and extreme margins), then
// the kernel benchmark (device time only, data already on the GPU) next to the memory-bandwidth
// floor. Builds with CUDA + CMake alone (bench/device/CMakeLists.txt, run by
// bench/device_check.sh); the CPU twin is the same raw::SolveUser the library's CPU loop runs.
// Exit status: 0 all parity checks passed, 1 a parity check failed, 77 no CUDA device.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/userstep/user_step_raw.h"
#include "cuda/user_step_kernels.cuh"

namespace {

using prefmix::raw::UserStepArgs;

#define CHECK(x)                                                                         \
  do {                                                                                   \
    cudaError_t e_ = (x);                                                                \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, \
                   __LINE__);                                                            \
      std::exit(2);                                                                      \
    }                                                                                    \
  } while (0)

/// splitmix64 + Box-Muller: reproducible normals without a library.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return ((Next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double Normal() {
    return std::sqrt(-2 * std::log(Uniform())) * std::cos(6.283185307179586 * Uniform());
  }
};

/// Host problem of U users with k pairs each.
struct Problem {
  int link = 0, K = 0, k = 0;
  int64_t U = 0;
  std::vector<int64_t> offsets;
  std::vector<float> q, offset, weight, prior, gram;
  std::vector<double> precision;  // gaussian link
  double lambda = 0, scale = 1, eps = 0;
};

Problem Make(int link, int K, int k, int64_t U, double margin, uint64_t seed) {
  Problem p;
  p.link = link;
  p.K = K;
  p.k = k;
  p.U = U;
  p.offsets.resize(U + 1);
  for (int64_t u = 0; u <= U; ++u) p.offsets[u] = u * k;
  p.q.resize(static_cast<size_t>(U) * k * K);
  p.weight.resize(static_cast<size_t>(U) * k);
  Rng rng(seed);
  for (auto& x : p.q) x = static_cast<float>(margin * rng.Normal());
  for (auto& w : p.weight) w = static_cast<float>(0.5 + rng.Uniform());
  if (link == prefmix::raw::kLinear || link == prefmix::raw::kGaussian) {
    p.offset.resize(p.weight.size());
    for (auto& b : p.offset) b = static_cast<float>(0.3 * rng.Normal());
  }
  if (link != prefmix::raw::kLoglik) p.lambda = 0.5;
  if (link == prefmix::raw::kLoglik) {
    p.prior.resize(K);
    for (int c = 0; c < K; ++c) p.prior[c] = static_cast<float>(std::log(1.0 / K));
  }
  if (link == prefmix::raw::kNormalized) {
    p.gram.assign(static_cast<size_t>(K) * K, 0.0f);
    for (int a = 0; a < K; ++a)
      for (int b = 0; b < K; ++b) p.gram[a * K + b] = a == b ? 1.0f + 0.1f * a : 0.05f;
    p.scale = 2.0;
    p.eps = 1e-8;
  }
  if (link == prefmix::raw::kGaussian) {  // 0.05 11' + diag(0.95 + 0.1 a): positive definite
    p.precision.assign(static_cast<size_t>(K) * K, 0.05);
    for (int a = 0; a < K; ++a) p.precision[a * K + a] = 1.0 + 0.1 * a;
  }
  return p;
}

struct Outputs {
  std::vector<float> latent;
  std::vector<double> objective;
  double mean_iterations = 0;
};

UserStepArgs Args(const Problem& p) {
  UserStepArgs a;
  a.link = p.link;
  a.K = p.K;
  a.n_users = p.U;
  a.lambda = p.lambda;
  a.scale = p.scale;
  a.norm_eps = p.eps;
  a.tol = p.link == prefmix::raw::kLinear ? 1e-5 : p.link == prefmix::raw::kMixture ? 1e-6 : 1e-6;
  a.max_iter = p.link == prefmix::raw::kNormalized ? 200 : 500;
  return a;
}

Outputs RunCpu(const Problem& p, double* seconds) {
  Outputs o;
  o.latent.resize(static_cast<size_t>(p.U) * p.K);
  o.objective.resize(p.U);
  UserStepArgs a = Args(p);
  a.offsets = p.offsets.data();
  a.q = p.q.data();
  a.offset = p.offset.empty() ? nullptr : p.offset.data();
  a.weight = p.weight.data();
  a.prior = p.prior.empty() ? nullptr : p.prior.data();
  a.gram = p.gram.empty() ? nullptr : p.gram.data();
  a.precision = p.precision.empty() ? nullptr : p.precision.data();
  a.latent = o.latent.data();
  a.objective = o.objective.data();
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t u = 0; u < p.U; ++u) prefmix::raw::SolveUser(a, u);
  *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return o;
}

template <typename T>
T* Upload(const std::vector<T>& v) {
  if (v.empty()) return nullptr;
  T* d = nullptr;
  CHECK(cudaMalloc(&d, v.size() * sizeof(T)));
  CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

/// Runs the kernel `reps` times on device-resident data; returns the outputs of the last run
/// and the median kernel time (cudaEvent, device time only).
Outputs RunGpu(const Problem& p, int reps, const prefmix::cuda::LaunchOptions& lo,
               double* seconds) {
  UserStepArgs a = Args(p);
  a.offsets = Upload(p.offsets);
  a.q = Upload(p.q);
  a.offset = Upload(p.offset);
  a.weight = Upload(p.weight);
  a.prior = Upload(p.prior);
  a.gram = Upload(p.gram);
  a.precision = Upload(p.precision);
  double* work = nullptr;  // the gaussian link's scratch, every user at once
  if (p.link == prefmix::raw::kGaussian) {
    CHECK(cudaMalloc(&work, static_cast<size_t>(p.U) * prefmix::raw::GaussianUserWorkDoubles(p.K) *
                                sizeof(double)));
    a.work = work;
    a.work_users = p.U;
  }
  float* latent = nullptr;
  double* objective = nullptr;
  int* iterations = nullptr;
  CHECK(cudaMalloc(&latent, static_cast<size_t>(p.U) * p.K * sizeof(float)));
  CHECK(cudaMalloc(&objective, static_cast<size_t>(p.U) * sizeof(double)));
  CHECK(cudaMalloc(&iterations, static_cast<size_t>(p.U) * sizeof(int)));
  a.latent = latent;
  a.objective = objective;
  a.iterations = iterations;
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  CHECK(prefmix::cuda::LaunchUserStep(a, 0, lo));  // warm-up
  CHECK(cudaDeviceSynchronize());
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    CHECK(cudaEventRecord(e0));
    CHECK(prefmix::cuda::LaunchUserStep(a, 0, lo));
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    times.push_back(ms / 1e3);
  }
  std::sort(times.begin(), times.end());
  *seconds = times[times.size() / 2];
  Outputs o;
  o.latent.resize(static_cast<size_t>(p.U) * p.K);
  o.objective.resize(p.U);
  CHECK(
      cudaMemcpy(o.latent.data(), latent, o.latent.size() * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(o.objective.data(), objective, o.objective.size() * sizeof(double),
                   cudaMemcpyDeviceToHost));
  std::vector<int> its(p.U);
  CHECK(cudaMemcpy(its.data(), iterations, its.size() * sizeof(int), cudaMemcpyDeviceToHost));
  for (int i : its) o.mean_iterations += i;
  o.mean_iterations /= static_cast<double>(p.U);
  for (const void* ptr : {static_cast<const void*>(a.offsets), static_cast<const void*>(a.q),
                          static_cast<const void*>(a.offset), static_cast<const void*>(a.weight),
                          static_cast<const void*>(a.prior), static_cast<const void*>(a.gram),
                          static_cast<const void*>(a.precision), static_cast<const void*>(work),
                          static_cast<const void*>(latent), static_cast<const void*>(objective),
                          static_cast<const void*>(iterations)})
    if (ptr) CHECK(cudaFree(const_cast<void*>(ptr)));
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  return o;
}

__global__ void ReadKernel(const float4* x, int64_t n, float* out) {
  float s = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float4 v = x[i];
    s += v.x + v.y + v.z + v.w;
  }
  if (s == 12345.678f) *out = s;  // keeps the loads
}

/// Device read bandwidth (bytes/s): a grid-stride float4 read of 2 GiB, median of 5.
double DeviceBandwidth() {
  const int64_t n4 = int64_t{1} << 27;  // 2 GiB
  float4* x = nullptr;
  float* out = nullptr;
  CHECK(cudaMalloc(&x, n4 * sizeof(float4)));
  CHECK(cudaMalloc(&out, sizeof(float)));
  CHECK(cudaMemset(x, 0, n4 * sizeof(float4)));
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  std::vector<double> bw;
  for (int r = 0; r < 6; ++r) {
    CHECK(cudaEventRecord(e0));
    ReadKernel<<<sms * 8, 256>>>(x, n4, out);
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (r > 0) bw.push_back(n4 * sizeof(float4) / (ms / 1e3));
  }
  std::sort(bw.begin(), bw.end());
  CHECK(cudaFree(x));
  CHECK(cudaFree(out));
  return bw[bw.size() / 2];
}

/// What is checked and timed: each link with the library's kernels, and the kernel variants
/// (cuda/user_step_kernels.cuh) next to them.
using prefmix::cuda::LaunchOptions;
using prefmix::cuda::LinearKernel;
using prefmix::cuda::LoglikKernel;
struct Variant {
  const char* name;
  int link;
  LaunchOptions launch;
  bool exact() const { return launch.exact_loglik; }
  /// The shared-memory linear kernels handle K <= 16.
  bool Handles(int K) const {
    return !(
        link == 1 && K > 16 &&
        (launch.linear == LinearKernel::kShared32 || launch.linear == LinearKernel::kShared64));
  }
};
LaunchOptions Loglik(LoglikKernel k, bool exact = false) {
  LaunchOptions o;
  o.loglik = k;
  o.exact_loglik = exact;
  return o;
}
LaunchOptions Linear(LinearKernel k) {
  LaunchOptions o;
  o.linear = k;
  return o;
}
const Variant kVariants[] = {{"loglik", 0, LaunchOptions()},
                             {"loglik-dpoly", 0, Loglik(LoglikKernel::kDirectPoly)},
                             {"loglik-staged", 0, Loglik(LoglikKernel::kStaged)},
                             {"loglik-spoly", 0, Loglik(LoglikKernel::kStagedPoly)},
                             {"loglik-f64", 0, Loglik(LoglikKernel::kDirect, true)},
                             {"linear", 1, LaunchOptions()},
                             {"linear-sh32", 1, Linear(LinearKernel::kShared32)},
                             {"linear-sh64", 1, Linear(LinearKernel::kShared64)},
                             {"mixture", 2, LaunchOptions()},
                             {"normalized", 3, LaunchOptions()},
                             {"gaussian", 4, LaunchOptions()}};

/// The names of kVariants, for usage messages.
std::string VariantNames() {
  std::string names;
  for (const Variant& v : kVariants) names += std::string(names.empty() ? "" : ", ") + v.name;
  return names;
}

}  // namespace

int main(int argc, char** argv) {
  bool bench = true;
  std::string only;  // --link NAME: one variant only (loglik, loglik-f64, linear, ...)
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--parity-only") == 0) {
      bench = false;
    } else if (std::strcmp(argv[i], "--link") == 0 && i + 1 < argc) {
      only = argv[++i];
      bool known = false;
      for (const Variant& v : kVariants) known |= only == v.name;
      if (!known) {
        std::fprintf(stderr, "device_check: --link %s is not one of %s\n", only.c_str(),
                     VariantNames().c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "device_check: unknown argument '%s' (usage: device_check "
                   "[--parity-only] [--link NAME])\n",
                   argv[i]);
      return 2;
    }
  }
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::printf("device_check: no CUDA device on this machine; nothing to check (skipped)\n");
    return 77;
  }
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs, %.1f GiB)\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / 1073741824.0);

  // Parity: objective relative error and weight max-abs error, CPU vs CUDA, under the tolerances
  // the GoogleTest parity tests use (raw::kParityObjectiveTol, raw::kParityLatentTol); the exact
  // loglik variant sums the same terms in another order (1e-9 relative).
  int failures = 0;
  const auto t_start = std::chrono::steady_clock::now();
  std::printf(
      "\nparity (2,000 users per case; 1,000 for mixture, normalized and gaussian)\n%-13s %3s %4s "
      "%7s %12s "
      "%12s %s\n",
      "link", "K", "k", "margin", "obj rel err", "w abs err", "verdict");
  // One problem and one CPU run per (link, K, k, margin), shared by the link's variants.
  for (int link = 0; link < 5; ++link)
    for (int K : {2, 10, 32})
      for (int k : {5, 20, 100})
        for (double margin : {1.0, 30.0}) {
          std::vector<const Variant*> vars;
          for (const Variant& v : kVariants)
            if (v.link == link && v.Handles(K) && (only.empty() || only == v.name))
              vars.push_back(&v);
          if (vars.empty()) continue;
          // 2,000 users (1,000 for the slow mixture / normalized / gaussian links: the GPU runs a
          // case's users as that many threads, far below occupancy).
          const int64_t users = link >= 2 ? 1000 : 2000;
          const Problem p = Make(link, K, k, users, margin, 1000 * link + 10 * K + k);
          double tc = 0, tg = 0;
          const Outputs c = RunCpu(p, &tc);
          for (const Variant* var : vars) {
            const Outputs g = RunGpu(p, 1, var->launch, &tg);
            double obj = 0, lat = 0;
            bool finite = true;
            for (int64_t u = 0; u < p.U; ++u) {
              finite &= std::isfinite(g.objective[u]);
              obj = std::max(obj, std::fabs(g.objective[u] - c.objective[u]) /
                                      (1 + std::fabs(c.objective[u])));
            }
            for (size_t i = 0; i < c.latent.size(); ++i) {
              finite &= std::isfinite(g.latent[i]);
              lat = std::max(lat, static_cast<double>(std::fabs(g.latent[i] - c.latent[i])));
            }
            const double tol = var->exact() ? 1e-9 : prefmix::raw::kParityObjectiveTol[link];
            const bool ok = finite && obj <= tol && lat <= prefmix::raw::kParityLatentTol;
            failures += !ok;
            std::printf("%-13s %3d %4d %7.0f %12.2e %12.2e %s\n", var->name, K, k, margin, obj, lat,
                        ok ? "ok" : "FAIL");
          }
        }
  if (!bench) return failures ? 1 : 0;

  std::printf("parity took %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  const double bw = DeviceBandwidth();
  std::printf("\nmeasured device read bandwidth: %.0f GB/s\n", bw / 1e9);
  std::printf(
      "\nbenchmark (device time of the kernel, data on the GPU; floor = bytes read once / "
      "bandwidth; it = mean iterations per user)\n%-13s %3s %4s %9s %12s %14s %8s %7s\n",
      "link", "K", "k", "users", "users/s", "floor users/s", "of floor", "it");
  for (int link = 0; link < 5; ++link)
    for (int K : {2, 10, 32})
      for (int k : {5, 20, 100}) {
        std::vector<const Variant*> vars;
        for (const Variant& v : kVariants)
          if (v.link == link && v.Handles(K) && (only.empty() || only == v.name))
            vars.push_back(&v);
        if (vars.empty()) continue;
        // About 256 MB of q for loglik and linear (linear K = 10, k = 20: 335,544 users, enough
        // threads to fill the GPU), 32 MB for mixture, normalized and gaussian.
        const int64_t floats = link <= 1 ? (int64_t{64} << 20) : (int64_t{8} << 20);
        const int64_t U = std::max<int64_t>(4096, floats / (static_cast<int64_t>(k) * K));
        const Problem p = Make(link, K, k, U, 1.5, 7 + link);
        for (const Variant* var : vars) {
          double t = 0;
          const Outputs g = RunGpu(p, link == 0 ? 10 : 3, var->launch, &t);
          const double bytes = k * (K + 1) * 4.0 + 8.0;
          const double floor = bw / bytes;
          std::printf("%-13s %3d %4d %9lld %12.3e %14.3e %8.3f %7.1f\n", var->name, K, k,
                      static_cast<long long>(U), U / t, floor, (U / t) / floor, g.mean_iterations);
        }
      }
  std::printf("\nparity: %s\n", failures ? "FAILED" : "all cases passed");
  return failures ? 1 : 0;
}
