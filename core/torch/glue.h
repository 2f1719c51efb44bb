#pragma once
// The LibTorch glue the torch families (bt, pal-a/pal-b, vpl) share: pairs as tensors, matrices in
// and out. Only those families include this room; the rest of prefmix never sees LibTorch.
#include <torch/torch.h>

#include <utility>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix::torchglue {

/// A pair set as tensors: indices as int64 (user, first, second, context), label and weight as
/// float32; all copies, independent of the PairSet.
struct PairTensors {
  torch::Tensor user, first, second, context, label, weight;
  int64_t n = 0;
};
PairTensors ToTensors(const PairSet& p);

/// A float32 view of a row-major matrix (no copy: `m` must outlive the tensor and not change).
torch::Tensor View(const RowMatrixF& m);
/// The item embeddings [n_items, D] as a view.
inline torch::Tensor Items(const Dataset& ds) { return View(ds.items); }
/// A float32 copy of a matrix.
torch::Tensor Copy(const RowMatrixF& m);
/// Copies of a module's parameter values (early stopping's best epoch), and their restoration.
std::vector<torch::Tensor> Snapshot(const std::vector<torch::Tensor>& params);
void Restore(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& snapshot);
/// A tensor of one or two dimensions as a float32 matrix (a vector becomes one column).
RowMatrixF ToMatrix(const torch::Tensor& t);

/// A net's parameters at the best epoch of an early-stopping rule: after each epoch, Offer its
/// validation loss; the parameters are copied when the rule calls it the best so far. `Rule` has
/// Better(loss, epoch) and Stop() (EarlyStopping, core/model/fit.h, which this layer does not
/// include).
template <class Rule>
class BestParameters {
 public:
  explicit BestParameters(Rule rule) : rule_(std::move(rule)) {}
  /// Epoch `epoch`'s validation loss (epochs from 1); true when the rule says stop.
  bool Offer(double loss, int epoch, const std::vector<torch::Tensor>& params) {
    if (rule_.Better(loss, epoch)) {
      best_ = Snapshot(params);
      return false;
    }
    return rule_.Stop();
  }
  /// Puts the best epoch's copy back (nothing when no epoch was offered).
  void RestoreBest(const std::vector<torch::Tensor>& params) const {
    if (!best_.empty()) Restore(params, best_);
  }
  const Rule& rule() const { return rule_; }

 private:
  Rule rule_;
  std::vector<torch::Tensor> best_;
};

}  // namespace prefmix::torchglue
