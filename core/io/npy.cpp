#include "core/io/npy.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/csv.h"

namespace prefmix {
namespace {

// The .npy layout (numpy/lib/format.py): "\x93NUMPY", major, minor, header length (uint16 LE in
// 1.0, uint32 LE in 2.0/3.0), then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } padded with spaces and '\n'.
constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

bool HostIsLittleEndian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// A tiny parser for the dict literal in the header: keys are quoted strings, values a quoted
// string, True/False or a tuple of non-negative integers.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  void Parse(NpyHeader* h) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    SkipSpace();
    Expect('{');
    while (true) {
      SkipSpace();
      if (Peek() == '}') {
        ++pos_;
        break;
      }
      const std::string key = ParseString();
      SkipSpace();
      Expect(':');
      SkipSpace();
      if (key == "descr") {
        h->descr = ParseString();
        have_descr = true;
      } else if (key == "fortran_order") {
        h->fortran_order = ParseBool(key);
        have_fortran = true;
      } else if (key == "shape") {
        h->shape = ParseShape();
        have_shape = true;
      } else {
        Fail(Cat("unknown header key ", QuoteValue(key),
                 " (expected 'descr', 'fortran_order', 'shape')"));
      }
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      SkipSpace();
      Expect('}');
      break;
    }
    PREFMIX_CHECK_INPUT(have_descr, path_, ": header field 'descr' is missing (header ",
                        QuoteValue(s_), ")");
    PREFMIX_CHECK_INPUT(have_fortran, path_, ": header field 'fortran_order' is missing (header ",
                        QuoteValue(s_), ")");
    PREFMIX_CHECK_INPUT(have_shape, path_, ": header field 'shape' is missing (header ",
                        QuoteValue(s_), ")");
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw Error(Cat(path_, ": malformed header at byte ", pos_, ": ", what, " (header ",
                    QuoteValue(s_), ")"));
  }
  char Peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  void Expect(char c) {
    if (Peek() != c) Fail(Cat("expected '", c, "'"));
    ++pos_;
  }
  std::string ParseString() {
    const char q = Peek();
    if (q != '\'' && q != '"') Fail("expected a quoted string");
    ++pos_;
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) ++pos_;
    if (pos_ >= s_.size()) Fail("unterminated string");
    std::string out = s_.substr(start, pos_ - start);
    ++pos_;
    return out;
  }
  bool ParseBool(const std::string& key) {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    Fail(Cat("'", key, "' must be True or False"));
  }
  std::vector<int64_t> ParseShape() {
    std::vector<int64_t> shape;
    Expect('(');
    while (true) {
      SkipSpace();
      if (Peek() == ')') {
        ++pos_;
        return shape;
      }
      if (Peek() < '0' || Peek() > '9') Fail("'shape' must be a tuple of non-negative integers");
      int64_t v = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) Fail("'shape' entry is too large");
        v = v * 10 + (Peek() - '0');
        ++pos_;
      }
      // Python 2 era writers appended 'L' to longs.
      if (Peek() == 'L') ++pos_;
      shape.push_back(v);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != ')') {
        Fail("expected ',' or ')' in 'shape'");
      }
    }
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1) out += ",";
  return out + ")";
}

}  // namespace

NpyHeader ReadNpyHeader(const std::string& path) {
  NoteInput(path);
  std::ifstream in(path, std::ios::binary);
  PREFMIX_CHECK_INPUT(in, path, ": cannot open file (", std::strerror(errno), ")");
  char pre[12];
  in.read(pre, 10);
  const std::streamsize got = in.gcount();
  PREFMIX_CHECK_INPUT(
      got >= static_cast<std::streamsize>(kMagicLen) && std::memcmp(pre, kMagic, kMagicLen) == 0,
      path, ": not a NumPy .npy file (magic bytes ",
      QuoteValue(std::string_view(pre, got < 6 ? got : 6)), ", expected '\\x93NUMPY')");
  PREFMIX_CHECK_INPUT(got == 10, path, ": truncated header (", got, " bytes)");
  NpyHeader h;
  h.major_version = static_cast<unsigned char>(pre[6]);
  h.minor_version = static_cast<unsigned char>(pre[7]);
  PREFMIX_CHECK_INPUT(h.major_version >= 1 && h.major_version <= 3 && h.minor_version == 0, path,
                      ": format version ", h.major_version, ".", h.minor_version,
                      " is not supported (1.0, 2.0 or 3.0)");
  uint64_t header_len = 0;
  if (h.major_version == 1) {
    header_len = static_cast<unsigned char>(pre[8]) | (static_cast<unsigned char>(pre[9]) << 8);
    h.data_offset = 10;
  } else {
    in.read(pre + 10, 2);
    PREFMIX_CHECK_INPUT(in.gcount() == 2, path, ": truncated header (", 10 + in.gcount(),
                        " bytes)");
    for (int i = 3; i >= 0; --i)
      header_len = (header_len << 8) | static_cast<unsigned char>(pre[8 + i]);
    h.data_offset = 12;
  }
  PREFMIX_CHECK_INPUT(header_len <= (1u << 24), path, ": header length ", header_len,
                      " is implausibly large");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  PREFMIX_CHECK_INPUT(static_cast<uint64_t>(in.gcount()) == header_len, path,
                      ": truncated header (declares ", header_len, " bytes, file has ", in.gcount(),
                      ")");
  h.data_offset += static_cast<int64_t>(header_len);
  HeaderParser(text, path).Parse(&h);
  return h;
}

RowMatrixF ReadNpy(const std::string& path) {
  const NpyHeader h = ReadNpyHeader(path);
  // '|' and '=' never appear for floats in files written on little-endian hosts, but '=' would
  // mean native order; accept it only where native is little-endian.
  int item_size = 0;
  const bool little =
      h.descr.size() == 3 && (h.descr[0] == '<' || (h.descr[0] == '=' && HostIsLittleEndian()));
  if (little && h.descr.compare(1, 2, "f4") == 0) item_size = 4;
  if (little && h.descr.compare(1, 2, "f8") == 0) item_size = 8;
  PREFMIX_CHECK_INPUT(item_size != 0, path, ": 'descr' is ", QuoteValue(h.descr),
                      "; expected '<f4' (float32) or '<f8' (float64), little-endian");
  PREFMIX_CHECK_INPUT(HostIsLittleEndian(), path,
                      ": reading .npy files needs a little-endian host");
  PREFMIX_CHECK_INPUT(h.shape.size() == 2, path, ": 'shape' is ", ShapeString(h.shape), " (",
                      h.shape.size(), "-D); expected a 2-D array (rows, cols)");
  PREFMIX_CHECK_INPUT(!h.fortran_order, path,
                      ": 'fortran_order' is True; expected False (C order: save "
                      "np.ascontiguousarray(x))");
  const int64_t rows = h.shape[0], cols = h.shape[1];
  // Overflow-safe size: rows * cols * item_size must fit comfortably in int64.
  PREFMIX_CHECK_INPUT(cols == 0 || rows <= (int64_t{1} << 50) / cols / item_size, path,
                      ": 'shape' ", ShapeString(h.shape), " is too large");
  const int64_t need = rows * cols * item_size;

  std::ifstream in(path, std::ios::binary);
  PREFMIX_CHECK_INPUT(in, path, ": cannot open file (", std::strerror(errno), ")");
  in.seekg(0, std::ios::end);
  const int64_t file_size = static_cast<int64_t>(in.tellg());
  const int64_t have = file_size - h.data_offset;
  PREFMIX_CHECK_INPUT(have >= need, path, ": truncated data: 'shape' ", ShapeString(h.shape),
                      " of ", QuoteValue(h.descr), " needs ", need,
                      " bytes after the header, the file has ", have);
  PREFMIX_CHECK_INPUT(have == need, path, ": ", have - need, " unexpected bytes after the data of ",
                      "'shape' ", ShapeString(h.shape), " (", need, " bytes expected)");
  in.seekg(h.data_offset, std::ios::beg);

  RowMatrixF out(rows, cols);
  if (item_size == 4) {
    in.read(reinterpret_cast<char*>(out.data()), need);
    PREFMIX_CHECK_INPUT(in.gcount() == need, path, ": read error after ", in.gcount(), " of ", need,
                        " data bytes");
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = out.data()[i];
      PREFMIX_CHECK_INPUT(std::isfinite(v), path, ": value ", v, " at row ", i / cols, ", col ",
                          i % cols, " is not finite");
    }
  } else {
    // float64: convert in chunks so the file is never held twice in memory.
    constexpr int64_t kChunk = int64_t{1} << 20;
    std::vector<double> buf;
    for (int64_t start = 0; start < rows * cols; start += kChunk) {
      const int64_t count = std::min(kChunk, rows * cols - start);
      buf.resize(static_cast<size_t>(count));
      in.read(reinterpret_cast<char*>(buf.data()), count * 8);
      PREFMIX_CHECK_INPUT(in.gcount() == count * 8, path, ": read error in the data");
      for (int64_t k = 0; k < count; ++k) {
        const int64_t i = start + k;
        const double v = buf[static_cast<size_t>(k)];
        PREFMIX_CHECK_INPUT(std::isfinite(v), path, ": value ", v, " at row ", i / cols, ", col ",
                            i % cols, " is not finite");
        const float f = static_cast<float>(v);
        PREFMIX_CHECK_INPUT(std::isfinite(f), path, ": value ", v, " at row ", i / cols, ", col ",
                            i % cols, " overflows float32");
        out.data()[i] = f;
      }
    }
  }
  return out;
}

}  // namespace prefmix
