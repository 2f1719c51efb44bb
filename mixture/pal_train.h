#pragma once
// The shared step of pal-a / pal-b (LibTorch lives in pal_train.cpp only, part of the LibTorch
// module, core/torch/module.h; see mixture/pal.h for the model). Internal to mixture/.
#include <cstdint>

#include "core/io/dataset.h"
#include "mixture/pal.h"

namespace prefmix::mixture {

/// One training run's settings (resolved: no "family default" zeros left).
struct PalTrainConfig {
  bool cosine = false;  ///< pal-b
  PalIdeal ideal = PalIdeal::kPw;
  int k = 2;              ///< prototypes
  int dim = 8;            ///< d, the projected dimension
  int hidden = 64;        ///< width of the projectors' two hidden layers
  bool hinge = false;     ///< PAL's hinge loss instead of Bradley-Terry
  bool contexts = false;  ///< pal-b: prompt projectors g_k on /contexts/embeddings
  int epochs = 300;       ///< maximum passes over the training pairs
  int batch = 0;          ///< pairs per Adam step (0: all)
  double lr = 3e-3;       ///< projectors' step size; prototypes and user logits use lr_proto
  double lr_proto = 0.05;
  double lr_scale = 0.1;  ///< pal-b's theta (PAL: 0.1)
  double l2 = 0.01;       ///< projectors' weight decay (PAL: 0.01)
  int patience = 20;      ///< early stopping: epochs without validation improvement
  uint64_t seed = 1;
};

/// What a run produced.
struct PalTrainResult {
  PalParams params;
  RowMatrixF omega;       ///< [n_users, K] user logits (rows of users without pairs: untrained)
  double best_valid = 0;  ///< validation loss at the kept epoch (NaN without validation)
  int best_epoch = 0;     ///< the kept epoch (the last one without validation)
};

/// Trains from a seeded init for at most c.epochs; with `valid`, keeps the parameters of the
/// epoch with the lowest validation loss (the training loss: BT or hinge). Throws prefmix::Error
/// when the loss stops being finite. Defined in pal.cpp: it calls the module's TrainPalTorch
/// (pal_train.cpp), loading the module on first use.
PalTrainResult TrainPal(const Dataset& ds, const PairSet& train, const PairSet* valid,
                        const PalTrainConfig& c);

}  // namespace prefmix::mixture
