#include "core/model/capabilities.h"

#include "core/error.h"

namespace prefmix {

ContextPair Oriented(const PairSet& p, size_t j) {
  return p.label[j] > 0.5f ? ContextPair{p.first[j], p.second[j]}
                           : ContextPair{p.second[j], p.first[j]};
}

std::vector<ContextSet> UserContextSets(const PairSet& pairs, int64_t n_users, int max_pairs) {
  std::vector<ContextSet> sets(n_users);
  for (size_t j = 0; j < pairs.size(); ++j) {
    const int32_t u = pairs.user[j];
    PREFMIX_ASSERT(u >= 0 && u < n_users, "context sets: pair user out of range");
    if ((int)sets[u].size() < max_pairs) sets[u].push_back(Oriented(pairs, j));
  }
  return sets;
}

}  // namespace prefmix
