#pragma once
// Small builders shared by a family's fast tests (tests/family) and its planted-truth tests
// (tests/recovery): one definition each.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "personalization/vpl.h"

namespace prefmix {

/// micro with K = 3 heads (the groups preset's planted K), routed on `router`.
inline ModelOptions MicroOptions(uint64_t seed, const std::string& router = "attributes") {
  ModelOptions mo;
  mo.family = "micro";
  mo.Set("k", 3);
  mo.seed = seed;
  mo.Set("router", router);
  return mo;
}

/// vpl with the family's own defaults.
inline ModelOptions VplOptions(uint64_t seed) {
  ModelOptions o;
  o.family = "vpl";
  o.seed = seed;
  return o;
}

/// Sets `key` where o.family declares it (one budget for several families); a no-op elsewhere.
template <typename T>
void SetIfDeclared(ModelOptions& o, const std::string& key, T value) {
  for (const auto& s : FamilyOptions(o.family))
    if (s.key == key) o.Set(key, value);
}

/// The amortized-posterior view of a vpl model.
inline const AmortizedPosteriorModel& Amortized(const Model& m) {
  const auto* a = dynamic_cast<const AmortizedPosteriorModel*>(&m);
  if (!a) throw std::runtime_error("vpl is not an AmortizedPosteriorModel");
  return *a;
}

/// Argmax of each latent row.
inline std::vector<int> Argmax(const RowMatrixF& g) {
  std::vector<int> z(g.rows());
  for (Eigen::Index u = 0; u < g.rows(); ++u) {
    Eigen::Index k = 0;
    g.row(u).maxCoeff(&k);
    z[u] = static_cast<int>(k);
  }
  return z;
}

}  // namespace prefmix
