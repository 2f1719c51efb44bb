#pragma once
// Family `bt`'s item reward r(e) behind one interface (internal to mixture/): the linear reward
// theta.e trained here with Eigen (bt.cpp), and the MLP trained with LibTorch in the LibTorch
// module (bt_mlp.cpp, core/torch/module.h), loaded only when --arch mlp is asked for.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix::mixture {

/// One bt net's settings (resolved: no "family default" zeros left).
struct BtNetConfig {
  int64_t dim = 0;
  int64_t hidden = 64;  ///< the MLP's two hidden layers
  double lr = 0.05;     ///< Adam's step size
  int64_t batch = 0;    ///< pairs per Adam step (0: all)
  int patience = 20;    ///< early stopping: epochs without validation improvement
  uint64_t seed = 1;
};

/// The mini-batch order's seed stream (the run's --seed plus this offset).
constexpr uint64_t kBtBatchOrderStream = 7;

class BtNet {
 public:
  virtual ~BtNet() = default;
  /// Trains from the seeded initialisation (fresh on every call) for at most `epochs` full passes
  /// of Adam over `train`, minimising the weighted logistic loss (sum w * BCE / sum w) plus
  /// l2 * (sum of the squared weights, biases excluded). With `valid`, keeps the parameters of the
  /// epoch with the lowest validation loss (patience early stopping), writes that epoch to
  /// *best_epoch and returns the loss; without, returns +inf. Throws prefmix::Error when training
  /// diverges.
  virtual double Train(const Dataset& ds, const PairSet& train, const PairSet* valid, double l2,
                       int epochs, int* best_epoch) = 0;
  /// r(e) of every item of ds.
  virtual Eigen::VectorXf Rewards(const Dataset& ds) const = 0;
  /// The parameters, one row each, in the model file's order (LibTorch's parameter order:
  /// weight [out, in] row-major, then bias, layer by layer).
  virtual std::vector<RowMatrixF> Params() const = 0;
  /// Sets the parameters (sizes already checked against ParamSizes()).
  virtual void SetParams(const std::vector<RowMatrixF>& params) = 0;
  /// The number of values of each parameter.
  virtual std::vector<int64_t> ParamSizes() const = 0;
};

/// The module's entry point "bt.mlp": a new MLP net (Linear(D, H), ReLU, Linear(H, H), ReLU,
/// Linear(H, 1)), initialised from config.seed.
using MakeBtMlpFn = std::unique_ptr<BtNet>(const BtNetConfig& config);

}  // namespace prefmix::mixture
