// libFuzzer harness of the CSV importer (core/io/importers.h): ImportPairs, the entry point of
// `prefmix import pairs`, which streams PAIRS.csv through CsvReader (core/io/csv.h) and reads
// USERS.csv with ReadCsvFile.
//
// The input is PAIRS.csv, optionally followed by a separator line and USERS.csv:
//   <PAIRS.csv>\n--users--\n<USERS.csv>            (--users)
//   <PAIRS.csv>\n--users+features--\n<USERS.csv>   (--users and a 3-row --user-features)
// The .npy inputs are fixed, valid files written once per process: ITEMS.npy with 5 rows
// (item indices 0..4), and CTX.npy with 3 rows, given as --contexts when the first line of
// PAIRS.csv names a context column.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/io/importers.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

using prefmix::fuzz::TempFile;
using prefmix::fuzz::TempPath;
using prefmix::fuzz::WriteFile;

// A version 1.0 .npy of float32 zeros with shape (rows, cols).
std::string Npy(int rows, int cols) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) +
                     ", " + std::to_string(cols) + "), }";
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  out += dict;
  for (int i = 0; i < rows * cols; ++i) {
    const float v = 0.25f * static_cast<float>(i % 7);
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  return out;
}

struct Files {
  TempFile items{TempPath("csv-items", ".npy")};
  TempFile contexts{TempPath("csv-contexts", ".npy")};
  TempFile features{TempPath("csv-features", ".npy")};
  TempFile pairs{TempPath("csv-pairs", ".csv")};
  TempFile users{TempPath("csv-users", ".csv")};
  Files() {
    WriteFile(items.path(), Npy(5, 3));
    WriteFile(contexts.path(), Npy(3, 2));
    WriteFile(features.path(), Npy(3, 2));
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Files files;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  prefmix::ImportPairsOptions opts;
  opts.items = files.items.path();
  opts.pairs = files.pairs.path();
  opts.embedding_model = "fuzz";

  std::string_view pairs = in;
  for (const char* sep : {"\n--users--\n", "\n--users+features--\n"}) {
    const size_t at = in.find(sep);
    if (at == std::string_view::npos) continue;
    pairs = in.substr(0, at);
    const std::string_view users = in.substr(at + std::strlen(sep));
    WriteFile(files.users.path(), reinterpret_cast<const uint8_t*>(users.data()), users.size());
    opts.users = files.users.path();
    if (std::strstr(sep, "features")) opts.user_features = files.features.path();
    break;
  }
  if (pairs.substr(0, pairs.find('\n')).find("context") != std::string_view::npos)
    opts.contexts = files.contexts.path();
  WriteFile(files.pairs.path(), reinterpret_cast<const uint8_t*>(pairs.data()), pairs.size());

  try {
    prefmix::ImportPairs(opts).Validate();
  } catch (const prefmix::Error& e) {
    prefmix::fuzz::Rejected(e);
  }
  return 0;
}
