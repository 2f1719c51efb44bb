#pragma once
// `prefmix adapt --active N --pool POOL.csv` and `prefmix experiment --active N`: active query
// selection (core/eval/active.h) wired into the CLI, kept apart from cmd_adapt.cpp and
// cmd_experiment.cpp so those stay small.
#include <memory>

#include "apps/cli_common.h"
#include "core/eval/experiment.h"
#include "core/io/dataset.h"
#include "core/model/model.h"

namespace prefmix::apps {

/// Adds --active, --pool, --criterion and --asked (adapt).
void AddAdaptActiveOptions(po::options_description& desc);
/// When --active N > 0: runs the selection and sets *latents (and writes --asked); returns false
/// (and does nothing) without --active. Throws prefmix::Error for --pool missing and bad input.
bool RunAdaptActive(const po::variables_map& vm, const Model& model, const Dataset& ds,
                    RowMatrixF* latents);

/// Adds --active and --criterion (experiment).
void AddExperimentActiveOptions(po::options_description& desc);
/// The unseen-protocol hook for --active N > 0 (null without it); requires --protocol unseen.
std::unique_ptr<UnseenExtra> ExperimentActiveExtra(const po::variables_map& vm,
                                                   const ProtocolOptions& proto);

}  // namespace prefmix::apps
