#include "routing/online.h"

#include <cmath>

#include "core/error.h"
#include "core/userstep/math.h"

namespace prefmix::routing {

OnlineEstimator ParseOnlineEstimator(const std::string& name) {
  if (name == "quasi-bayes") return OnlineEstimator::kQuasiBayes;
  if (name == "map") return OnlineEstimator::kMap;
  throw Error(Cat("--online-estimator: '", name, "' is not one of quasi-bayes, map"));
}

double QuasiBayesUpdate(const float* q, int K, double c, double* alpha) {
  double a0 = 0, num = 0, c_k[math::kMaxK];
  for (int k = 0; k < K; ++k) {
    const double x = math::Sigmoid(q[k]);
    c_k[k] = alpha[k] * x;
    num += c_k[k];
    a0 += alpha[k];
  }
  const double p = a0 > 0 ? num / a0 : 0.5;
  if (num > 0) {
    for (int k = 0; k < K; ++k) alpha[k] += c * c_k[k] / num;
  } else {
    // Every component gives the label probability 0 (margins beyond float range): the exact
    // posterior is undefined; keep the mean and count the label as evidence spread evenly.
    for (int k = 0; k < K; ++k) alpha[k] += c * (a0 > 0 ? alpha[k] / a0 : 1.0 / K);
  }
  return p;
}

OnlinePass RunOnlineMixture(const UserStepProblem& stream, const RowMatrixF& prior, double strength,
                            OnlineEstimator estimator, int max_iter, double tol) {
  CheckUserStepProblem(stream);
  const int K = stream.K;
  const int64_t U = stream.n_users;
  PREFMIX_ASSERT(prior.rows() == U && prior.cols() == K, "online: prior shape ", prior.rows(), "x",
                 prior.cols(), " for ", U, " users and K = ", K);
  PREFMIX_CHECK_INPUT(strength >= 0 && std::isfinite(strength), "online: prior strength ", strength,
                      " must be a finite number >= 0");
  OnlinePass out;
  out.prob.assign(stream.n_pairs(), 0.5);
  out.latent.resize(U, K);
  if (estimator == OnlineEstimator::kQuasiBayes) out.alpha.resize(U, K);
  const float* q = stream.q.data();
  const float* wt = stream.weight.empty() ? nullptr : stream.weight.data();
  // A zero-strength prior still needs a start: a vanishing Dirichlet at the centre.
  const double s = strength > 0 ? strength : 1e-9;
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t u = 0; u < U; ++u) {
    const int64_t begin = stream.offsets[u], end = stream.offsets[u + 1];
    double centre[math::kMaxK], z = 0;
    for (int k = 0; k < K; ++k) z += (centre[k] = std::max<double>(prior(u, k), 1e-12));
    for (int k = 0; k < K; ++k) centre[k] /= z;
    if (estimator == OnlineEstimator::kQuasiBayes) {
      double alpha[math::kMaxK];
      for (int k = 0; k < K; ++k) alpha[k] = s * centre[k];
      for (int64_t j = begin; j < end; ++j)
        out.prob[j] = QuasiBayesUpdate(q + j * K, K, wt ? wt[j] : 1.0, alpha);
      double a0 = 0;
      for (int k = 0; k < K; ++k) a0 += alpha[k];
      for (int k = 0; k < K; ++k) {
        out.alpha(u, k) = static_cast<float>(alpha[k]);
        out.latent(u, k) = static_cast<float>(alpha[k] / a0);
      }
    } else {
      float w0[math::kMaxK];
      double w[math::kMaxK];
      for (int k = 0; k < K; ++k) w[k] = w0[k] = static_cast<float>(centre[k]);
      for (int64_t j = begin; j < end; ++j) {
        double p = 0;
        for (int k = 0; k < K; ++k) p += w[k] * math::Sigmoid(q[j * K + k]);
        out.prob[j] = p;
        // The labels so far are [begin, j]; warm start at the previous MAP.
        math::SolveMixtureSimplex(q + begin * K, wt ? wt + begin : nullptr, j - begin + 1, K, w0,
                                  strength, max_iter, tol, w);
      }
      for (int k = 0; k < K; ++k) out.latent(u, k) = static_cast<float>(w[k]);
    }
  }
  return out;
}

}  // namespace prefmix::routing
