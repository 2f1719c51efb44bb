#include "core/io/importers.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/csv.h"
#include "core/io/npy.h"

namespace prefmix {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whole-field integer (surrounding blanks allowed, nothing else).
bool ParseInt64(std::string_view text, int64_t* out) {
  text = Trim(text);
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Whole-field real number; "nan"/"inf" parse (and are rejected by the callers' range checks).
bool ParseDouble(std::string_view text, double* out) {
  const std::string s(Trim(text));
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// ---------------------------------------------------------------------------------------------
// pairs

// A row index into `array_path` (which has `n` rows) from field `field` of `csv` line `line`.
int64_t ParseRowIndex(const std::string& csv, int64_t line, const char* field,
                      const std::string& value, int64_t n, const std::string& array_path) {
  int64_t v = 0;
  PREFMIX_CHECK_INPUT(ParseInt64(value, &v), csv, ": line ", line, ", field '", field,
                      "': ", QuoteValue(value), " is not an integer row index of ", array_path);
  PREFMIX_CHECK_INPUT(v >= 0 && v < n, csv, ": line ", line, ", field '", field, "': ", v,
                      " is out of range: ", array_path, " has ", n, " rows (valid 0..", n - 1, ")");
  return v;
}

// Reads a .npy that must have at least one row and one column.
RowMatrixF ReadNonEmptyNpy(const std::string& path) {
  RowMatrixF m = ReadNpy(path);
  PREFMIX_CHECK_INPUT(m.rows() > 0 && m.cols() > 0, path, ": 'shape' is (", m.rows(), ", ",
                      m.cols(), "); expected at least one row and one column");
  return m;
}

void TrimAll(std::vector<std::string>* fields) {
  for (auto& f : *fields) f = std::string(Trim(f));
}

}  // namespace

Dataset ImportPairs(const ImportPairsOptions& opts) {
  PREFMIX_CHECK_INPUT(!opts.items.empty(), "import pairs: ITEMS.npy (--items) is required");
  PREFMIX_CHECK_INPUT(!opts.pairs.empty(), "import pairs: PAIRS.csv (--pairs) is required");
  PREFMIX_CHECK_INPUT(opts.user_features.empty() || !opts.users.empty(), opts.user_features,
                      ": --user-features needs --users USERS.csv (feature rows follow its rows)");
  Dataset ds;
  ds.source = opts.pairs;
  ds.embedding_model = opts.embedding_model;
  ds.description = Cat("imported by prefmix import pairs from ", opts.pairs);
  ds.items = ReadNonEmptyNpy(opts.items);
  if (!opts.contexts.empty()) {
    ds.contexts = ReadNonEmptyNpy(opts.contexts);
    ds.has_contexts = true;
  }

  // --- PAIRS.csv, streamed (it can hold millions of rows).
  const std::string& pairs_path = opts.pairs;
  CsvReader reader = CsvReader::FromFile(pairs_path);
  std::vector<std::string> header;
  PREFMIX_CHECK_INPUT(
      reader.Next(&header), pairs_path,
      ": line 1: empty file (expected header user,chosen,rejected[,context][,weight])");
  TrimAll(&header);
  int context_col = -1, weight_col = -1;
  bool header_ok = header.size() >= 3 && header.size() <= 5 && header[0] == "user" &&
                   header[1] == "chosen" && header[2] == "rejected";
  if (header_ok && header.size() == 4) {
    if (header[3] == "context") {
      context_col = 3;
    } else if (header[3] == "weight") {
      weight_col = 3;
    } else {
      header_ok = false;
    }
  } else if (header_ok && header.size() == 5) {
    header_ok = header[3] == "context" && header[4] == "weight";
    context_col = 3;
    weight_col = 4;
  }
  PREFMIX_CHECK_INPUT(header_ok, pairs_path, ": line ", reader.line(),
                      ", header: ", QuoteValue(JoinFields(header)),
                      " is not user,chosen,rejected[,context][,weight]");
  PREFMIX_CHECK_INPUT(!ds.has_contexts || context_col >= 0, pairs_path, ": line ", reader.line(),
                      ", header: ", QuoteValue(JoinFields(header)),
                      " has no 'context' column, but --contexts ", opts.contexts, " was given");

  std::unordered_map<std::string, int64_t> user_row;
  std::vector<int64_t> user_first_line;  // where each user first appears (for messages)
  std::vector<std::string> f;
  const int64_t n_items = ds.n_items();
  const int64_t n_contexts = ds.has_contexts ? ds.contexts.rows() : 0;
  while (reader.Next(&f)) {
    const int64_t line = reader.line();
    PREFMIX_CHECK_INPUT(f.size() == header.size(), pairs_path, ": line ", line, ": ", f.size(),
                        " field(s) ", QuoteValue(JoinFields(f)), ", expected ", header.size(), " (",
                        JoinFields(header), ")");
    PREFMIX_CHECK_INPUT(!f[0].empty(), pairs_path, ": line ", line,
                        ", field 'user': empty user id ''");
    const auto [it, inserted] = user_row.emplace(f[0], static_cast<int64_t>(ds.user_ids.size()));
    if (inserted) {
      PREFMIX_CHECK_INPUT(IsValidUtf8(f[0]), pairs_path, ": line ", line,
                          ", field 'user': ", QuoteValue(f[0]), " is not valid UTF-8");
      ds.user_ids.push_back(f[0]);
      user_first_line.push_back(line);
    }
    const int64_t chosen = ParseRowIndex(pairs_path, line, "chosen", f[1], n_items, opts.items);
    const int64_t rejected = ParseRowIndex(pairs_path, line, "rejected", f[2], n_items, opts.items);
    PREFMIX_CHECK_INPUT(chosen != rejected, pairs_path, ": line ", line,
                        ", fields 'chosen' and 'rejected': both are ", chosen,
                        " (a pair must compare two different items)");
    ds.cmp_user.push_back(it->second);
    ds.cmp_chosen.push_back(chosen);
    ds.cmp_rejected.push_back(rejected);
    if (context_col >= 0) {
      const std::string_view v = Trim(f[context_col]);
      int64_t ctx = -1;
      if (!v.empty() && v != "-1") {
        PREFMIX_CHECK_INPUT(ds.has_contexts, pairs_path, ": line ", line,
                            ", field 'context': ", QuoteValue(f[context_col]),
                            " given but no --contexts CTX.npy (leave it empty or -1)");
        ctx = ParseRowIndex(pairs_path, line, "context", f[context_col], n_contexts, opts.contexts);
      }
      ds.cmp_context.push_back(ctx);
    }
    if (weight_col >= 0) {
      double w = 1.0;
      if (!Trim(f[weight_col]).empty()) {
        PREFMIX_CHECK_INPUT(ParseDouble(f[weight_col], &w), pairs_path, ": line ", line,
                            ", field 'weight': ", QuoteValue(f[weight_col]), " is not a number");
        const float wf = static_cast<float>(w);
        PREFMIX_CHECK_INPUT(std::isfinite(w) && w > 0 && std::isfinite(wf) && wf > 0, pairs_path,
                            ": line ", line, ", field 'weight': ", QuoteValue(f[weight_col]),
                            " must be finite and > 0 (as float32)");
      }
      ds.cmp_weight.push_back(static_cast<float>(w));
    }
  }
  PREFMIX_CHECK_INPUT(!ds.cmp_user.empty(), pairs_path,
                      ": no pairs: the file has a header but no data rows (empty result)");

  // --- USERS.csv: attributes, and the row order of --user-features.
  if (!opts.users.empty()) {
    const std::string& users_path = opts.users;
    CsvTable t = ReadCsvFile(users_path);
    TrimAll(&t.header);
    PREFMIX_CHECK_INPUT(t.header[0] == "user", users_path,
                        ": line 1, header field 1: ", QuoteValue(t.header[0]),
                        "; expected 'user' (header user,<attribute>...)");
    const size_t n_attr = t.header.size() - 1;
    for (size_t a = 1; a < t.header.size(); ++a) {
      const std::string& name = t.header[a];
      PREFMIX_CHECK_INPUT(
          !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
              std::none_of(name.begin(), name.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x20; }) &&
              IsValidUtf8(name),
          users_path, ": line 1, header field ", a + 1, ": attribute name ", QuoteValue(name),
          " is empty or not a valid HDF5 name (UTF-8, no '/', no control characters)");
      for (size_t b = 0; b < a; ++b) {
        PREFMIX_CHECK_INPUT(t.header[b] != name, users_path, ": line 1, header field ", a + 1,
                            ": column name ", QuoteValue(name), " repeats header field ", b + 1);
      }
    }
    // Pass 1: user rows (users found only here are appended, in this file's order).
    std::vector<int64_t> row_user(t.rows.size());
    std::unordered_map<std::string, int64_t> line_of_id;
    for (size_t r = 0; r < t.rows.size(); ++r) {
      const auto& row = t.rows[r];
      const int64_t line = t.lines[r];
      PREFMIX_CHECK_INPUT(row.size() == t.header.size(), users_path, ": line ", line, ": ",
                          row.size(), " field(s) ", QuoteValue(JoinFields(row)), ", expected ",
                          t.header.size(), " (", QuoteValue(JoinFields(t.header)), ")");
      const std::string& uid = row[0];
      PREFMIX_CHECK_INPUT(!uid.empty(), users_path, ": line ", line,
                          ", field 'user': empty user id ''");
      const auto [dup, fresh] = line_of_id.emplace(uid, line);
      PREFMIX_CHECK_INPUT(fresh, users_path, ": line ", line, ", field 'user': duplicate user id ",
                          QuoteValue(uid), " (first at line ", dup->second, ")");
      const auto [it, inserted] = user_row.emplace(uid, static_cast<int64_t>(ds.user_ids.size()));
      if (inserted) {
        PREFMIX_CHECK_INPUT(IsValidUtf8(uid), users_path, ": line ", line,
                            ", field 'user': ", QuoteValue(uid), " is not valid UTF-8");
        ds.user_ids.push_back(uid);
        user_first_line.push_back(-1);
      }
      row_user[r] = it->second;
    }
    // Pass 2: attribute codes, labels in order of first appearance; empty = unknown (-1).
    for (size_t a = 0; a < n_attr; ++a) {
      Attribute attr;
      attr.name = t.header[a + 1];
      attr.codes.assign(ds.user_ids.size(), -1);
      std::unordered_map<std::string, int32_t> code_of;
      for (size_t r = 0; r < t.rows.size(); ++r) {
        const std::string& v = t.rows[r][a + 1];
        if (v.empty()) continue;
        const auto [it, inserted] = code_of.emplace(v, static_cast<int32_t>(attr.labels.size()));
        if (inserted) {
          PREFMIX_CHECK_INPUT(IsValidUtf8(v), users_path, ": line ", t.lines[r], ", field '",
                              attr.name, "': ", QuoteValue(v), " is not valid UTF-8");
          attr.labels.push_back(v);
        }
        attr.codes[row_user[r]] = it->second;
      }
      ds.attributes.push_back(std::move(attr));
    }
    // --user-features: one row per USERS.csv row, permuted into user-row order.
    if (!opts.user_features.empty()) {
      const RowMatrixF feat = ReadNonEmptyNpy(opts.user_features);
      PREFMIX_CHECK_INPUT(feat.rows() == static_cast<int64_t>(t.rows.size()), opts.user_features,
                          ": 'shape' is (", feat.rows(), ", ", feat.cols(), "): ", feat.rows(),
                          " rows, but ", users_path, " has ", t.rows.size(),
                          " user rows (one feature row per USERS.csv row, in its order)");
      std::vector<int64_t> feat_row(ds.user_ids.size(), -1);
      for (size_t r = 0; r < t.rows.size(); ++r) feat_row[row_user[r]] = static_cast<int64_t>(r);
      for (size_t u = 0; u < feat_row.size(); ++u) {
        PREFMIX_CHECK_INPUT(feat_row[u] >= 0, pairs_path, ": line ", user_first_line[u],
                            ", field 'user': user ", QuoteValue(ds.user_ids[u]), " has no row in ",
                            users_path, ", which --user-features ", opts.user_features,
                            " needs for every user");
      }
      ds.user_features.resize(static_cast<Eigen::Index>(ds.user_ids.size()), feat.cols());
      for (size_t u = 0; u < feat_row.size(); ++u) {
        ds.user_features.row(static_cast<Eigen::Index>(u)) = feat.row(feat_row[u]);
      }
    }
  }
  ds.Validate();
  return ds;
}

// ---------------------------------------------------------------------------------------------
// SUSHI3 (T. Kamishima, "Nantonac Collaborative Filtering", KDD 2003). Column numbers below are
// the README's 1-based ones.

namespace {

struct TextTable {
  std::string path;
  std::vector<std::vector<std::string>> rows;  // tokens of each non-empty line
  std::vector<int64_t> lines;                  // 1-based line numbers
};

// Reads `path` and splits each non-empty line at `sep` (tab for .idata/.udata, space for .order).
TextTable ReadTokens(const std::string& path, char sep) {
  NoteInput(path);
  std::ifstream in(path, std::ios::binary);
  PREFMIX_CHECK_INPUT(in, path, ": cannot open file (", std::strerror(errno), ")");
  TextTable t;
  t.path = path;
  std::string line;
  int64_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (Trim(line).empty()) continue;
    std::vector<std::string> tok;
    size_t start = 0;
    while (true) {
      const size_t end = line.find(sep, start);
      const std::string_view piece =
          std::string_view(line).substr(start, end == std::string::npos ? end : end - start);
      if (sep != ' ' || !piece.empty()) tok.emplace_back(Trim(piece));
      if (end == std::string::npos) break;
      start = end + 1;
    }
    t.rows.push_back(std::move(tok));
    t.lines.push_back(no);
  }
  PREFMIX_CHECK_INPUT(!in.bad(), path, ": read error");
  return t;
}

void CheckColumns(const TextTable& t, size_t r, size_t want) {
  PREFMIX_CHECK_INPUT(t.rows[r].size() == want, t.path, ": line ", t.lines[r], ": ",
                      t.rows[r].size(), " columns, expected ", want);
}

int64_t IntAt(const TextTable& t, size_t r, size_t col0, const char* name, int64_t lo, int64_t hi) {
  const std::string& v = t.rows[r][col0];
  int64_t x = 0;
  PREFMIX_CHECK_INPUT(ParseInt64(v, &x) && x >= lo && x <= hi, t.path, ": line ", t.lines[r],
                      ", column ", col0 + 1, " (", name, "): ", QuoteValue(v),
                      " is not an integer in [", lo, ", ", hi, "]");
  return x;
}

double RealAt(const TextTable& t, size_t r, size_t col0, const char* name) {
  const std::string& v = t.rows[r][col0];
  double x = 0;
  PREFMIX_CHECK_INPUT(ParseDouble(v, &x) && std::isfinite(x), t.path, ": line ", t.lines[r],
                      ", column ", col0 + 1, " (", name, "): ", QuoteValue(v),
                      " is not a finite number");
  return x;
}

constexpr int kSushiItemsB = 100;
constexpr int kMinorGroups = 12;
constexpr int kRegions = 12;
// Set-A item ids 0..9 are these sushi3.idata rows (README "ID for the item set A").
constexpr std::array<int, 10> kSetAToIdata = {0, 1, 2, 3, 4, 6, 7, 8, 26, 29};

Attribute MakeAttribute(std::string name, std::vector<std::string> labels) {
  Attribute a;
  a.name = std::move(name);
  a.labels = std::move(labels);
  return a;
}

}  // namespace

Dataset ImportSushi(const std::string& dir, char set) {
  PREFMIX_CHECK_INPUT(set == 'a' || set == 'b' || set == 'A' || set == 'B', "SUSHI item set ",
                      QuoteValue(std::string(1, set)), " is not a or b");
  const bool set_a = set == 'a' || set == 'A';
  std::error_code ec;
  PREFMIX_CHECK_INPUT(std::filesystem::is_directory(dir, ec), dir,
                      ": SUSHI directory does not exist (expected sushi3.idata, sushi3.udata and "
                      "the .order files there)");
  const std::string base = dir + "/";

  // --- Items: sushi3.idata, 100 rows x 9 tab-separated columns: 1 id, 2 name, 3 style
  // (0 maki, 1 otherwise), 4 major group (0 seafood, 1 otherwise), 5 minor group (0..11),
  // 6 oiliness [0-4], 7 how often users eat it [0-3], 8 normalised price, 9 how often shops sell
  // it [0-1].
  const TextTable idata = ReadTokens(base + "sushi3.idata", '\t');
  PREFMIX_CHECK_INPUT(idata.rows.size() == kSushiItemsB, idata.path, ": ", idata.rows.size(),
                      " item rows, expected ", kSushiItemsB);
  std::vector<int> rows;
  if (set_a) {
    rows.assign(kSetAToIdata.begin(), kSetAToIdata.end());
  } else {
    for (int i = 0; i < kSushiItemsB; ++i) rows.push_back(i);
  }
  const int n_items = static_cast<int>(rows.size());
  // Item features (18): [0] style, [1] major group, [2..13] one-hot minor group,
  // [14..17] oiliness, eating frequency, price, selling frequency, each standardised to mean 0
  // and (population) sd 1 over the items of this set.
  constexpr int kNumeric = 4;
  constexpr int kDim = 2 + kMinorGroups + kNumeric;
  Dataset ds;
  ds.source = dir;
  ds.embedding_model = "sushi3-features";
  ds.description = Cat("SUSHI3 item set ", set_a ? "A" : "B",
                       " (T. Kamishima, KDD 2003): 18 item features (style, major group, one-hot "
                       "minor group, 4 standardised numeric), one ranking per user, best first");
  ds.items = RowMatrixF::Zero(n_items, kDim);
  RowMatrixD numeric(n_items, kNumeric);
  for (size_t r = 0; r < idata.rows.size(); ++r) {
    CheckColumns(idata, r, 9);
    IntAt(idata, r, 0, "item id", static_cast<int64_t>(r), static_cast<int64_t>(r));
  }
  for (int i = 0; i < n_items; ++i) {
    const size_t r = static_cast<size_t>(rows[i]);
    ds.item_ids.push_back(idata.rows[r][1]);
    ds.items(i, 0) = static_cast<float>(IntAt(idata, r, 2, "style", 0, 1));
    ds.items(i, 1) = static_cast<float>(IntAt(idata, r, 3, "major group", 0, 1));
    ds.items(i, 2 + IntAt(idata, r, 4, "minor group", 0, kMinorGroups - 1)) = 1.0f;
    numeric(i, 0) = RealAt(idata, r, 5, "oiliness");
    numeric(i, 1) = RealAt(idata, r, 6, "eating frequency");
    numeric(i, 2) = RealAt(idata, r, 7, "normalized price");
    numeric(i, 3) = RealAt(idata, r, 8, "selling frequency");
  }
  for (int c = 0; c < kNumeric; ++c) {
    const double mean = numeric.col(c).mean();
    const double sd = std::sqrt((numeric.col(c).array() - mean).square().mean());
    for (int i = 0; i < n_items; ++i) {
      const double z = sd > 0 ? (numeric(i, c) - mean) / sd : 0.0;
      ds.items(i, 2 + kMinorGroups + c) = static_cast<float>(z);
    }
  }

  // --- Users: sushi3.udata, 11 tab-separated columns: 1 user id, 2 gender (0 male, 1 female),
  // 3 age group, 4 seconds to fill the form, 5/6/7 prefecture/region/east-west where the user
  // lived longest until age 15, 8/9/10 the same for the current residence, 11 moved (5 != 8).
  const TextTable udata = ReadTokens(base + "sushi3.udata", '\t');
  PREFMIX_CHECK_INPUT(!udata.rows.empty(), udata.path, ": no user rows");
  const size_t n_users = udata.rows.size();
  Attribute gender = MakeAttribute("gender", {"male", "female"});
  Attribute age = MakeAttribute("age", {"15-19", "20-29", "30-39", "40-49", "50-59", "60+"});
  const std::vector<std::string> region_labels = {
      "Hokkaido", "Tohoku",  "Hokuriku", "Kanto+Shizuoka", "Nagano+Yamanashi", "Chukyo",
      "Kinki",    "Chugoku", "Shikoku",  "Kyushu",         "Okinawa",          "foreign"};
  Attribute region = MakeAttribute("region", region_labels);
  Attribute east_west = MakeAttribute("east_west", {"east", "west"});
  Attribute east_west_15 = MakeAttribute("east_west_15", {"east", "west"});
  // User features (29), all in [0, 1]: [0] gender (1 = female), [1] age group / 5 (ordinal),
  // [2] east_west now (1 = west), [3] east_west until 15, [4] moved (current prefecture differs
  // from the one until 15), [5..16] one-hot current region, [17..28] one-hot region until 15.
  constexpr int kUserDim = 5 + 2 * kRegions;
  ds.user_features = RowMatrixF::Zero(static_cast<Eigen::Index>(n_users), kUserDim);
  std::unordered_map<std::string, int64_t> line_of_id;
  for (size_t r = 0; r < n_users; ++r) {
    CheckColumns(udata, r, 11);
    IntAt(udata, r, 0, "user id", 0, std::numeric_limits<int64_t>::max());
    const std::string& uid = udata.rows[r][0];
    const auto [dup, fresh] = line_of_id.emplace(uid, udata.lines[r]);
    PREFMIX_CHECK_INPUT(fresh, udata.path, ": line ", udata.lines[r],
                        ", column 1 (user id): duplicate user id ", QuoteValue(uid),
                        " (first at line ", dup->second, ")");
    ds.user_ids.push_back(uid);
    const int64_t g = IntAt(udata, r, 1, "gender", 0, 1);
    const int64_t a = IntAt(udata, r, 2, "age group", 0, 5);
    IntAt(udata, r, 4, "prefecture until 15", 0, 47);
    const int64_t reg15 = IntAt(udata, r, 5, "region until 15", 0, kRegions - 1);
    const int64_t ew15 = IntAt(udata, r, 6, "east/west until 15", 0, 1);
    IntAt(udata, r, 7, "current prefecture", 0, 47);
    const int64_t reg = IntAt(udata, r, 8, "current region", 0, kRegions - 1);
    const int64_t ew = IntAt(udata, r, 9, "current east/west", 0, 1);
    const int64_t moved = IntAt(udata, r, 10, "moved", 0, 1);
    gender.codes.push_back(static_cast<int32_t>(g));
    age.codes.push_back(static_cast<int32_t>(a));
    region.codes.push_back(static_cast<int32_t>(reg));
    east_west.codes.push_back(static_cast<int32_t>(ew));
    east_west_15.codes.push_back(static_cast<int32_t>(ew15));
    auto feat = ds.user_features.row(static_cast<Eigen::Index>(r));
    feat(0) = static_cast<float>(g);
    feat(1) = static_cast<float>(a) / 5.0f;
    feat(2) = static_cast<float>(ew);
    feat(3) = static_cast<float>(ew15);
    feat(4) = static_cast<float>(moved);
    feat(5 + reg) = 1.0f;
    feat(5 + kRegions + reg15) = 1.0f;
  }
  ds.attributes = {std::move(gender), std::move(age), std::move(region), std::move(east_west),
                   std::move(east_west_15)};

  // --- Rankings: line 1 "<n items> 1", then per udata row "0 <length> <ids, best first>".
  const TextTable order =
      ReadTokens(base + (set_a ? "sushi3a.5000.10.order" : "sushi3b.5000.10.order"), ' ');
  PREFMIX_CHECK_INPUT(!order.rows.empty(), order.path, ": empty file");
  CheckColumns(order, 0, 2);
  IntAt(order, 0, 0, "number of items", n_items, n_items);
  PREFMIX_CHECK_INPUT(order.rows.size() - 1 == n_users, order.path, ": ", order.rows.size() - 1,
                      " rankings, but ", udata.path, " has ", n_users,
                      " users (one ranking per user, in the same order)");
  ds.rank_offsets.push_back(0);
  std::vector<int> seen(n_items, -1);
  for (size_t r = 1; r < order.rows.size(); ++r) {
    PREFMIX_CHECK_INPUT(order.rows[r].size() >= 2, order.path, ": line ", order.lines[r], ": ",
                        order.rows[r].size(), " columns, expected 0 <length> <item ids>");
    const int64_t len = IntAt(order, r, 1, "length", 2, n_items);
    CheckColumns(order, r, static_cast<size_t>(2 + len));
    for (int64_t k = 0; k < len; ++k) {
      const int64_t item = IntAt(order, r, static_cast<size_t>(2 + k), "item id", 0, n_items - 1);
      PREFMIX_CHECK_INPUT(seen[item] != static_cast<int>(r), order.path, ": line ", order.lines[r],
                          ", column ", 3 + k, " (item id): ", item,
                          " appears twice in one ranking");
      seen[item] = static_cast<int>(r);
      ds.rank_items.push_back(item);
    }
    ds.rank_user.push_back(static_cast<int64_t>(r - 1));
    ds.rank_offsets.push_back(static_cast<int64_t>(ds.rank_items.size()));
  }
  ds.Validate();
  return ds;
}

}  // namespace prefmix
