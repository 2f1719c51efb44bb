#include "core/model/fit.h"

#include "core/error.h"

namespace prefmix {

PairSet FirstPairsPerUser(const PairSet& pairs, const std::vector<std::vector<size_t>>& by_user,
                          int k) {
  PairSet out;
  for (const auto& rows : by_user)
    for (int i = 0; i < k && i < static_cast<int>(rows.size()); ++i) out.PushFrom(pairs, rows[i]);
  return out;
}

size_t SelectUserStepOnPseudoUnseen(const PairSet& train, int64_t n_users,
                                    const std::vector<int>& shots, size_t n_candidates,
                                    const std::function<double(size_t, const PairSet&)>& loss,
                                    std::vector<double>* mean_loss) {
  PREFMIX_ASSERT(n_candidates > 0 && !shots.empty(), "user-step selection without candidates");
  const auto by = train.ByUser(n_users);
  std::vector<double> total(n_candidates, 0.0);
  for (int k : shots) {
    const PairSet support = FirstPairsPerUser(train, by, k);
    for (size_t g = 0; g < n_candidates; ++g) total[g] += loss(g, support);
  }
  size_t best = 0;
  for (size_t g = 0; g < n_candidates; ++g)
    if (total[g] < total[best]) best = g;  // compared before averaging: no tie from rounding
  mean_loss->resize(n_candidates);
  for (size_t g = 0; g < n_candidates; ++g)
    (*mean_loss)[g] = total[g] / static_cast<double>(shots.size());
  return best;
}

}  // namespace prefmix
