#pragma once
// cereal helpers for Eigen matrices and the stream-based payloads of the model file.
//
// Loading from a PortableBinaryInputArchive (the model file) never trusts a stored length with
// memory: strings, vectors and matrices grow in steps of at most kLoadChunkBytes as their bytes
// actually arrive, so a corrupt length (a bit flip, a truncated or hostile file) ends in
// cereal::Exception ("Failed to read N bytes") after at most about twice the input's size, not
// in a multi-gigabyte allocation or std::length_error. LoadModel turns that into prefmix::Error.
#include <algorithm>
#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix::serialize_detail {

/// The most a load step reserves before the bytes that fill it have been read.
constexpr uint64_t kLoadChunkBytes = uint64_t{1} << 20;

/// Reads `n` values of arithmetic type T into `out` (a std::string or std::vector, resized to
/// n), kLoadChunkBytes at a time.
template <class T, class Archive, class Container>
void LoadArithmetic(Archive& ar, uint64_t n, Container& out) {
  constexpr uint64_t kStep = std::max<uint64_t>(1, kLoadChunkBytes / sizeof(T));
  out.clear();
  for (uint64_t done = 0; done < n;) {
    const uint64_t step = std::min(kStep, n - done);
    out.resize(static_cast<size_t>(done + step));
    ar(cereal::binary_data(&out[static_cast<size_t>(done)], static_cast<size_t>(step * sizeof(T))));
    done += step;
  }
}

}  // namespace prefmix::serialize_detail

namespace cereal {

// More specialised than cereal's own loads of these types (types/string.hpp, types/vector.hpp),
// so chosen for PortableBinaryInputArchive; saving is cereal's (the same bytes).

inline void load(PortableBinaryInputArchive& ar, std::string& s) {
  size_type size = 0;
  ar(make_size_tag(size));
  prefmix::serialize_detail::LoadArithmetic<char>(ar, size, s);
}

template <class T, class A>
std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>> load(
    PortableBinaryInputArchive& ar, std::vector<T, A>& v) {
  size_type size = 0;
  ar(make_size_tag(size));
  prefmix::serialize_detail::LoadArithmetic<T>(ar, size, v);
}

template <class T, class A>
std::enable_if_t<!std::is_arithmetic_v<T>> load(PortableBinaryInputArchive& ar,
                                                std::vector<T, A>& v) {
  size_type size = 0;
  ar(make_size_tag(size));
  v.clear();
  // Every element reads at least one byte, so a false count fails at the end of the input.
  for (size_type i = 0; i < size; ++i) {
    v.emplace_back();
    ar(v.back());
  }
}

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
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
  if (n * sizeof(Scalar) <= prefmix::serialize_detail::kLoadChunkBytes) {
    m.resize(rows, cols);
    if (n) ar(cereal::binary_data(m.data(), sizeof(Scalar) * n));
    return;
  }
  // A large matrix: its values first (in chunks, as they arrive), then one allocation.
  std::vector<Scalar> values;
  prefmix::serialize_detail::LoadArithmetic<Scalar>(ar, n, values);
  m.resize(rows, cols);
  std::memcpy(m.data(), values.data(), sizeof(Scalar) * n);
}

}  // namespace cereal
