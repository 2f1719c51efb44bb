#pragma once
// The fit skeleton the families share (the model/fitter split): what every iterative family's
// Fit does the same way is written here once, and each family supplies only its model.
//   1. Settings on validation: fit each candidate (an L2 strength, a latent size) on the training
//      pairs with early stopping on the validation pairs; keep the lowest validation loss
//      (SelectOnValidation), recording the curve in the fit report.
//   2. Early stopping: patience on the validation loss, best epoch kept (EarlyStopping).
//   3. The user step on pseudo-unseen users: each training user's first k training pairs are the
//      support, the validation pairs the queries (SelectUserStepOnPseudoUnseen).
//   4. The refit on train + validation (Concat, core/io/dataset.h) with the chosen settings and
//      epochs, unless --no-refit.
// Random draws take their seeds from the run's --seed and a named stream (DeriveSeed,
// core/rng.h); the streams a family uses are named constants in its file.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/io/dataset.h"
#include "core/io/json.h"
#include "core/model/model.h"

namespace prefmix {

/// Patience early stopping on a validation loss. An epoch is better when its loss is below the
/// best so far by more than kMinImprovement; training stops after `patience` epochs without one.
class EarlyStopping {
 public:
  static constexpr double kMinImprovement = 1e-7;
  explicit EarlyStopping(int patience) : patience_(patience) {}
  /// Records the validation loss of `epoch` (from 1); true when it is the new best (snapshot the
  /// parameters now).
  bool Better(double loss, int epoch) {
    if (loss < best_ - kMinImprovement) {
      best_ = loss;
      best_epoch_ = epoch;
      since_ = 0;
      return true;
    }
    ++since_;
    return false;
  }
  /// True once `patience` epochs in a row were not better.
  bool Stop() const { return since_ >= patience_; }
  double best() const { return best_; }
  int best_epoch() const { return best_epoch_; }

 private:
  int patience_;
  double best_ = INFINITY;
  int best_epoch_ = 0;
  int since_ = 0;
};

/// Step 1: fits each grid value with `fit(value, &best_epoch)` (on the training pairs,
/// early-stopped on the validation pairs; returns the best validation loss) and keeps the lowest
/// validation loss, the first on ties. Records {key: value, "valid_log_loss", "epochs"} per
/// candidate in rep->details["selection"]. When a candidate had a finite loss, sets *value to it
/// and *epochs to its best epoch (at least 1: the refit's epoch count) and returns true.
template <typename T, typename FitFn>
bool SelectOnValidation(const char* key, const std::vector<T>& grid, FitFn fit, FitReport* rep,
                        T* value, int* epochs) {
  Json curve = Json::Array();
  double best = INFINITY;
  bool found = false;
  for (const T& g : grid) {
    int best_epoch = 0;
    const double loss = fit(g, &best_epoch);
    Json e = Json::Object();
    e[key] = g;
    e["valid_log_loss"] = loss;
    e["epochs"] = best_epoch;
    curve.push_back(e);
    if (loss < best) {
      best = loss;
      found = true;
      *value = g;
      *epochs = best_epoch > 1 ? best_epoch : 1;
    }
  }
  rep->details["selection"] = curve;
  return found;
}

/// The L2 grid of step 1: {l2} when given (>= 0), else `candidates`.
inline std::vector<double> L2Grid(double l2, std::vector<double> candidates) {
  return l2 >= 0 ? std::vector<double>{l2} : candidates;
}

/// Step 3: chooses among `n_candidates` user steps on pseudo-unseen users. For each support size
/// k of `shots`, the support is each training user's first k training pairs;
/// `loss(candidate, support)` is the candidate's validation loss from that support. Returns the
/// candidate with the lowest mean over the support sizes (the first on ties) and the means in
/// *mean_loss.
size_t SelectUserStepOnPseudoUnseen(const PairSet& train, int64_t n_users,
                                    const std::vector<int>& shots, size_t n_candidates,
                                    const std::function<double(size_t, const PairSet&)>& loss,
                                    std::vector<double>* mean_loss);

/// Each user's first `k` pairs of `pairs` (in pair order), users in row order.
PairSet FirstPairsPerUser(const PairSet& pairs, const std::vector<std::vector<size_t>>& by_user,
                          int k);

}  // namespace prefmix
