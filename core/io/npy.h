#pragma once
// Reader of NumPy .npy files (format versions 1.0, 2.0, 3.0): 2-D float32/float64 arrays in C
// order, as written by np.save(path, np.ascontiguousarray(x, dtype=np.float32)).
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix {

/// The parsed header of a .npy file.
struct NpyHeader {
  int major_version = 0;  ///< 1, 2 or 3
  int minor_version = 0;
  std::string descr;           ///< e.g. "<f4"
  bool fortran_order = false;  ///< true = column-major data
  std::vector<int64_t> shape;  ///< one entry per dimension
  int64_t data_offset = 0;     ///< byte offset of the array data in the file
};

/// Reads and checks the header of `path` (magic, version, dict syntax). Throws prefmix::Error
/// naming the file, the field and the value on any defect; does not check descr or shape.
NpyHeader ReadNpyHeader(const std::string& path);

/// Reads a 2-D float32 ('<f4') or float64 ('<f8', converted) C-order array. Throws prefmix::Error
/// naming the file, the field ('descr', 'shape', ...) or the row/col, and the value, for a missing
/// file, bad magic, unsupported dtype, shape that is not 2-D, Fortran order, truncated or extra
/// data, and NaN/Inf values (or float64 values that overflow float32).
RowMatrixF ReadNpy(const std::string& path);

}  // namespace prefmix
