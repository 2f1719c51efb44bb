#pragma once
// cereal helpers for Eigen matrices and the stream-based payloads of the model file.
#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include "core/io/dataset.h"

namespace cereal {

/// Eigen dense matrices (any storage order): rows, cols, then the raw values.
template <class Archive, class Scalar, int R, int C, int O, int MR, int MC>
void save(Archive& ar, const Eigen::Matrix<Scalar, R, C, O, MR, MC>& m) {
  int64_t rows = m.rows(), cols = m.cols();
  ar(rows, cols);
  if (m.size()) ar(cereal::binary_data(m.data(), sizeof(Scalar) * m.size()));
}

template <class Archive, class Scalar, int R, int C, int O, int MR, int MC>
void load(Archive& ar, Eigen::Matrix<Scalar, R, C, O, MR, MC>& m) {
  int64_t rows = 0, cols = 0;
  ar(rows, cols);
  if (rows < 0 || cols < 0 || (rows > 0 && cols > (int64_t{1} << 40) / rows))
    throw cereal::Exception("matrix shape out of range");
  m.resize(rows, cols);
  if (m.size()) ar(cereal::binary_data(m.data(), sizeof(Scalar) * m.size()));
}

}  // namespace cereal
