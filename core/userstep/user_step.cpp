#include "core/userstep/user_step.h"

#include <Eigen/Cholesky>
#include <cmath>
#include <exception>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step_cpu.h"
#include "core/userstep/user_step_raw.h"

namespace prefmix {
namespace {
UserStepBackendFn g_cuda_user_step = nullptr;
int (*g_cuda_device_count)() = nullptr;
}  // namespace

void RegisterCudaUserStep(UserStepBackendFn fn, int (*device_count)()) {
  g_cuda_user_step = fn;
  g_cuda_device_count = device_count;
}

bool BuiltWithCuda() { return g_cuda_user_step != nullptr; }

int CudaDeviceCount() { return g_cuda_device_count ? g_cuda_device_count() : 0; }

void CheckDevice(const std::string& device) {
  if (device == "cpu") return;
  PREFMIX_CHECK_INPUT(device == "cuda", "--device: '", device, "' is not one of cpu, cuda");
  PREFMIX_CHECK_INPUT(BuiltWithCuda(),
                      "--device cuda: prefmix was built without CUDA; install the CUDA toolkit "
                      "and rebuild (cmake -DPREFMIX_CUDA=ON)");
  PREFMIX_CHECK_INPUT(CudaDeviceCount() > 0,
                      "--device cuda: no CUDA device is available on this machine (no GPU or no "
                      "driver); use --device cpu");
}

void CheckUserStepProblem(const UserStepProblem& p, UserStepLink link) {
  const int max_k = link == UserStepLink::kGaussian ? kMaxGaussianK : math::kMaxK;
  PREFMIX_ASSERT(p.K >= 1 && p.K <= max_k, "K = ", p.K, " outside [1, ", max_k, "]");
  PREFMIX_ASSERT((int64_t)p.offsets.size() == p.n_users + 1, "offsets size");
  PREFMIX_ASSERT(p.offsets.empty() || p.offsets[0] == 0, "offsets[0] != 0");
  for (int64_t u = 0; u < p.n_users; ++u) PREFMIX_ASSERT(p.offsets[u + 1] >= p.offsets[u]);
  const int64_t n = p.n_pairs();
  PREFMIX_ASSERT((int64_t)p.q.size() == n * p.K, "q size ", p.q.size(), " != ", n * p.K);
  PREFMIX_ASSERT(p.offset.empty() || (int64_t)p.offset.size() == n, "offset size");
  PREFMIX_ASSERT(p.weight.empty() || (int64_t)p.weight.size() == n, "weight size");
  PREFMIX_ASSERT(p.prior.empty() || (int)p.prior.size() == p.K, "prior size");
  PREFMIX_ASSERT(p.gram.empty() || (int64_t)p.gram.size() == int64_t{p.K} * p.K, "gram size");
}

UserStepProblem GatherUserStepProblem(const RowMatrixF& item_values, const PairSet& pairs,
                                      int64_t n_users) {
  const int K = static_cast<int>(item_values.cols());
  UserStepProblem p;
  p.K = K;
  p.n_users = n_users;
  const auto by = pairs.ByUser(n_users);
  p.offsets.assign(n_users + 1, 0);
  for (int64_t u = 0; u < n_users; ++u)
    p.offsets[u + 1] = p.offsets[u] + static_cast<int64_t>(by[u].size());
  p.q.resize(p.n_pairs() * K);
  p.weight.resize(p.n_pairs());
  const float* V = item_values.data();
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < n_users; ++u) {
    int64_t row = p.offsets[u];
    for (size_t j : by[u]) {
      const float s = pairs.label[j] > 0.5f ? 1.0f : -1.0f;
      const float* va = V + static_cast<int64_t>(pairs.first[j]) * K;
      const float* vb = V + static_cast<int64_t>(pairs.second[j]) * K;
      for (int k = 0; k < K; ++k) p.q[row * K + k] = s * (va[k] - vb[k]);
      p.weight[row] = pairs.weight[j];
      ++row;
    }
  }
  return p;
}

raw::UserStepArgs RawArgs(UserStepLink link, const UserStepProblem& p, const UserStepOptions& opt,
                          const RowMatrixF* init, UserStepResult* r) {
  raw::UserStepArgs a;
  a.link = static_cast<int>(link);
  a.K = p.K;
  a.n_users = p.n_users;
  a.offsets = p.offsets.data();
  a.q = p.q.data();
  a.offset = p.offset.empty() ? nullptr : p.offset.data();
  a.weight = p.weight.empty() ? nullptr : p.weight.data();
  a.prior = p.prior.empty() ? nullptr : p.prior.data();
  a.gram = p.gram.empty() ? nullptr : p.gram.data();
  a.precision = p.precision.empty() ? nullptr : p.precision.data();
  a.init = init ? init->data() : nullptr;
  a.lambda = p.lambda;
  a.scale = p.scale;
  a.norm_eps = p.norm_eps;
  a.tol = opt.tol;
  a.max_iter = opt.max_iter;
  a.hard = opt.hard ? 1 : 0;
  a.probit = p.probit ? 1 : 0;
  a.variance_split = p.variance_split;
  if (r) {
    a.variance = r->variance.size() ? r->variance.data() : nullptr;
    a.latent = r->latent.data();
    a.loglik = r->loglik.size() ? r->loglik.data() : nullptr;
    a.logits = r->logits.size() ? r->logits.data() : nullptr;
    a.objective = r->objective.data();
    a.residual = r->residual.data();
    a.iterations = r->iterations.data();
  }
  return a;
}

UserStepResult RunUserStep(UserStepLink link, const UserStepProblem& p, const UserStepOptions& opt,
                           const std::string& device, const RowMatrixF* init) {
  CheckUserStepProblem(p, link);
  if (link == UserStepLink::kNormalized)
    PREFMIX_ASSERT(!p.gram.empty(), "normalized link without a Gram matrix");
  if (link == UserStepLink::kGaussian) {
    PREFMIX_ASSERT((int64_t)p.precision.size() == int64_t{p.K} * p.K,
                   "gaussian link: the prior precision has ", p.precision.size(),
                   " entries, K = ", p.K);
    const Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
        Pd(p.precision.data(), p.K, p.K);
    PREFMIX_ASSERT(
        (Pd - Pd.transpose()).cwiseAbs().maxCoeff() <= 1e-6 * (1 + Pd.cwiseAbs().maxCoeff()),
        "gaussian link: the prior precision is not symmetric");
    PREFMIX_ASSERT(Eigen::LLT<Eigen::MatrixXd>(Pd).info() == Eigen::Success,
                   "gaussian link: the prior precision is not positive definite");
    PREFMIX_ASSERT(p.variance_split >= 0 && p.variance_split < p.K, "variance_split ",
                   p.variance_split, " outside [0, K)");
  }
  CheckDevice(device);
  if (init) PREFMIX_ASSERT(init->rows() == p.n_users && init->cols() == p.K, "init shape");
  if (device == "cuda") return g_cuda_user_step(link, p, opt, init);

  const int K = p.K;
  UserStepResult r;
  r.latent.resize(p.n_users, K);
  r.objective.assign(p.n_users, 0.0);
  r.residual.assign(p.n_users, 0.0);
  r.iterations.assign(p.n_users, 0);
  if (link == UserStepLink::kLoglik) r.loglik.resize(p.n_users, K);
  if (link == UserStepLink::kNormalized) r.logits.resize(p.n_users, K);
  if (link == UserStepLink::kGaussian) r.variance.resize(p.n_users, K);
  const raw::UserStepArgs a = RawArgs(link, p, opt, init, &r);
  std::exception_ptr failure;
  if (link == UserStepLink::kGaussian) {
#pragma omp parallel
    {
      std::vector<double> work(raw::GaussianUserWorkDoubles(K));  // this thread's scratch
#pragma omp for schedule(dynamic, 16)
      for (int64_t u = 0; u < p.n_users; ++u) raw::SolveGaussianUser(a, u, work.data());
    }
    return r;
  }
  if (link == UserStepLink::kLinear) {  // its own loop, in the build the CPU supports
    cpu::SolveLinearUsers(a);
    return r;
  }
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t u = 0; u < p.n_users; ++u) {
    try {
      raw::SolveUser(a, u);
    } catch (...) {
#pragma omp critical
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
  return r;
}

}  // namespace prefmix
