// CUDA implementation of core's user-step contract (core/user_step.h). One thread per user runs
// the same host+device maths as the CPU loop (core/math.h); the per-user data is read from global
// memory in the CSR layout. Registered with core at static-initialisation time.
#include <cuda_runtime.h>

#include <vector>

#include "core/error.h"
#include "core/math.h"
#include "core/user_step.h"

namespace prefmix::cuda {
namespace {

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(Cat("CUDA error in ", what, ": ", cudaGetErrorString(e)));
}

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  explicit DeviceBuffer(size_t n, const T* host = nullptr) {
    if (n == 0) return;
    Check(cudaMalloc(&ptr, n * sizeof(T)), "cudaMalloc");
    if (host) Check(cudaMemcpy(ptr, host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

__global__ void UserStepKernel(int link, int K, int64_t n_users, const int64_t* offsets,
                               const float* q, const float* off, const float* wt,
                               const float* prior, double lambda, int hard, int max_iter,
                               double tol, const float* init, float* latent, float* loglik,
                               double* objective, double* residual, int* iterations) {
  int64_t u = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (u >= n_users) return;
  const int64_t b = offsets[u], n = offsets[u + 1] - b;
  double v[math::kMaxK];
  if (link == 0) {
    math::UserLoglik(q + b * K, wt ? wt + b : nullptr, n, K, prior, v);
    double m = v[0];
    for (int k = 0; k < K; ++k) {
      loglik[u * K + k] = (float)v[k];
      m = v[k] > m ? v[k] : m;
    }
    double z = 0;
    for (int k = 0; k < K; ++k) z += exp(v[k] - m);
    objective[u] = m + log(z);
    math::Posterior(v, K, hard != 0);
    residual[u] = 0;
    iterations[u] = 0;
  } else if (link == 2) {  // mixture: init rows are the per-user prior centres
    float centre[math::kMaxK];
    for (int k = 0; k < K; ++k) {
      centre[k] = init ? init[u * K + k] : prior ? prior[k] : 1.0f / K;
      v[k] = centre[k];
    }
    math::MixtureSolveInfo info = math::SolveMixtureSimplex(q + b * K, wt ? wt + b : nullptr, n, K,
                                                            centre, lambda, max_iter, tol, v);
    objective[u] = info.objective;
    residual[u] = info.residual;
    iterations[u] = info.iterations;
  } else {
    for (int k = 0; k < K; ++k) v[k] = init ? init[u * K + k] : 1.0 / K;
    math::SimplexSolveInfo info =
        math::SolveLinearSimplex(q + b * K, off ? off + b : nullptr, wt ? wt + b : nullptr, n, K,
                                 prior, lambda, max_iter, tol, v);
    objective[u] = info.objective;
    residual[u] = info.residual;
    iterations[u] = info.iterations;
  }
  for (int k = 0; k < K; ++k) latent[u * K + k] = (float)v[k];
}

UserStepResult RunCuda(UserStepLink link, const UserStepProblem& p, const UserStepOptions& opt,
                       const RowMatrixF* init) {
  const int K = p.K;
  const int64_t U = p.n_users;
  DeviceBuffer<int64_t> d_off(p.offsets.size(), p.offsets.data());
  DeviceBuffer<float> d_q(p.q.size(), p.q.data());
  DeviceBuffer<float> d_b(p.offset.size(), p.offset.data());
  DeviceBuffer<float> d_w(p.weight.size(), p.weight.data());
  DeviceBuffer<float> d_prior(p.prior.size(), p.prior.data());
  DeviceBuffer<float> d_init(init ? init->size() : 0, init ? init->data() : nullptr);
  DeviceBuffer<float> d_latent(U * K), d_loglik(U * K);
  DeviceBuffer<double> d_obj(U), d_res(U);
  DeviceBuffer<int> d_it(U);
  if (U > 0) {
    int threads = 128;
    int blocks = static_cast<int>((U + threads - 1) / threads);
    const int link_code = link == UserStepLink::kLoglik ? 0 : link == UserStepLink::kLinear ? 1 : 2;
    UserStepKernel<<<blocks, threads>>>(link_code, K, U, d_off.ptr, d_q.ptr, d_b.ptr, d_w.ptr,
                                        d_prior.ptr, p.lambda, opt.hard ? 1 : 0, opt.max_iter,
                                        opt.tol, d_init.ptr, d_latent.ptr, d_loglik.ptr, d_obj.ptr,
                                        d_res.ptr, d_it.ptr);
    Check(cudaGetLastError(), "user-step kernel launch");
    Check(cudaDeviceSynchronize(), "user-step kernel");
  }
  UserStepResult r;
  r.latent.resize(U, K);
  r.objective.resize(U);
  r.residual.resize(U);
  r.iterations.resize(U);
  if (U > 0) {
    Check(cudaMemcpy(r.latent.data(), d_latent.ptr, U * K * sizeof(float), cudaMemcpyDeviceToHost),
          "copy");
    Check(cudaMemcpy(r.objective.data(), d_obj.ptr, U * sizeof(double), cudaMemcpyDeviceToHost),
          "copy");
    Check(cudaMemcpy(r.residual.data(), d_res.ptr, U * sizeof(double), cudaMemcpyDeviceToHost),
          "copy");
    Check(cudaMemcpy(r.iterations.data(), d_it.ptr, U * sizeof(int), cudaMemcpyDeviceToHost),
          "copy");
    if (link == UserStepLink::kLoglik) {
      r.loglik.resize(U, K);
      Check(
          cudaMemcpy(r.loglik.data(), d_loglik.ptr, U * K * sizeof(float), cudaMemcpyDeviceToHost),
          "copy");
    }
  }
  return r;
}

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;  // no driver: an error, not 0
  return n;
}

struct Registrar {
  Registrar() { RegisterCudaUserStep(RunCuda, DeviceCount); }
} g_registrar;

}  // namespace
}  // namespace prefmix::cuda
