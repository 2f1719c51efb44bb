#pragma once
// RFC 4180 CSV reader: comma-separated fields, optional double quotes ("" inside a quoted field
// is one quote; quoted fields may hold commas and line breaks), CRLF or LF record ends, an
// optional UTF-8 byte-order mark. Blank lines are skipped. Line numbers are 1-based.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace prefmix {

/// Streams the records of one CSV text; error messages name `source` and the line.
class CsvReader {
 public:
  /// Reads the whole file `path` (throws prefmix::Error naming it when it cannot be read).
  static CsvReader FromFile(const std::string& path);
  /// Parses `text`; `source` names it in messages.
  CsvReader(std::string text, std::string source);

  /// Reads the next record into `fields`; false at end of input. Throws prefmix::Error for an
  /// unterminated quoted field or a character after a closing quote.
  bool Next(std::vector<std::string>* fields);
  /// 1-based line on which the record last returned by Next() starts.
  int64_t line() const { return record_line_; }
  /// The file name (or label) given at construction.
  const std::string& source() const { return source_; }

 private:
  std::string text_;
  std::string source_;
  size_t pos_ = 0;
  int64_t cur_line_ = 1;
  int64_t record_line_ = 0;
};

/// A whole CSV file: the first record is the header.
struct CsvTable {
  std::string source;                          ///< file name for messages
  std::vector<std::string> header;             ///< header fields
  std::vector<std::vector<std::string>> rows;  ///< records after the header (may be ragged)
  std::vector<int64_t> lines;                  ///< 1-based starting line of each row
};

/// Reads `path` into a table; throws prefmix::Error for an empty file (no header) or bad quoting.
CsvTable ReadCsvFile(const std::string& path);
/// Parses `text` into a table; `source` names it in messages.
CsvTable ParseCsv(std::string text, const std::string& source);

/// A field value quoted for a one-line error message: 'value', control characters escaped,
/// values longer than 80 bytes shortened with "...".
std::string QuoteValue(std::string_view value);

/// True when `s` is well-formed UTF-8 (the dataset stores ids and labels as UTF-8 strings).
bool IsValidUtf8(std::string_view s);

/// The fields joined with commas (for messages such as "expected header user,chosen,rejected").
std::string JoinFields(const std::vector<std::string>& fields);

}  // namespace prefmix
