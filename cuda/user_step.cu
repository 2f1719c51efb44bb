// CUDA implementation of core's user-step contract (core/userstep/user_step.h): copies a problem to
// the device and runs the kernels of cuda/user_step_kernels.cuh (a thread per user and component
// for the loglik link, in single precision; a thread per user running the CPU loop's own code
// for the iterative links). Registered with core at static-initialisation time.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "cuda/user_step_kernels.cuh"

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

UserStepResult RunCuda(UserStepLink link, const UserStepProblem& p, const UserStepOptions& opt,
                       const RowMatrixF* init) {
  const int K = p.K;
  const int64_t U = p.n_users;
  DeviceBuffer<int64_t> d_off(p.offsets.size(), p.offsets.data());
  DeviceBuffer<float> d_q(p.q.size(), p.q.data());
  DeviceBuffer<float> d_b(p.offset.size(), p.offset.data());
  DeviceBuffer<float> d_w(p.weight.size(), p.weight.data());
  DeviceBuffer<float> d_prior(p.prior.size(), p.prior.data());
  DeviceBuffer<float> d_gram(p.gram.size(), p.gram.data());
  DeviceBuffer<double> d_prec(p.precision.size(), p.precision.data());
  DeviceBuffer<float> d_init(init ? init->size() : 0, init ? init->data() : nullptr);
  DeviceBuffer<float> d_latent(U * K), d_loglik(link == UserStepLink::kLoglik ? U * K : 0);
  DeviceBuffer<double> d_obj(U), d_res(U), d_logits(link == UserStepLink::kNormalized ? U * K : 0);
  DeviceBuffer<int> d_it(U);
  // The gaussian link: its variances, and scratch for up to 256 MiB of users at a time.
  const bool gaussian = link == UserStepLink::kGaussian;
  const int64_t per_user = raw::GaussianUserWorkDoubles(K);
  const int64_t work_users =
      gaussian ? std::max<int64_t>(1, std::min<int64_t>(U, (int64_t{256} << 20) / 8 / per_user))
               : 0;
  DeviceBuffer<float> d_var(gaussian ? U * K : 0);
  DeviceBuffer<double> d_work(gaussian ? work_users * per_user : 0);
  raw::UserStepArgs a = RawArgs(link, p, opt, init, nullptr);
  a.offsets = d_off.ptr;
  a.q = d_q.ptr;
  a.offset = d_b.ptr;
  a.weight = d_w.ptr;
  a.prior = d_prior.ptr;
  a.gram = d_gram.ptr;
  a.precision = d_prec.ptr;
  a.init = d_init.ptr;
  a.latent = d_latent.ptr;
  a.loglik = d_loglik.ptr;
  a.logits = d_logits.ptr;
  a.objective = d_obj.ptr;
  a.residual = d_res.ptr;
  a.iterations = d_it.ptr;
  a.variance = d_var.ptr;
  a.work = d_work.ptr;
  a.work_users = work_users;
  Check(LaunchUserStep(a), "user-step kernel launch");
  Check(cudaDeviceSynchronize(), "user-step kernel");
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
    if (link == UserStepLink::kNormalized) {
      r.logits.resize(U, K);
      Check(
          cudaMemcpy(r.logits.data(), d_logits.ptr, U * K * sizeof(double), cudaMemcpyDeviceToHost),
          "copy");
    }
    if (gaussian) {
      r.variance.resize(U, K);
      Check(cudaMemcpy(r.variance.data(), d_var.ptr, U * K * sizeof(float), cudaMemcpyDeviceToHost),
            "copy");
    }
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
