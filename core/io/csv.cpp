#include "core/io/csv.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "core/io/atomic_file.h"

namespace prefmix {

CsvReader CsvReader::FromFile(const std::string& path) {
  NoteInput(path);
  std::ifstream in(path, std::ios::binary);
  PREFMIX_CHECK_INPUT(in, path, ": cannot open file (", std::strerror(errno), ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  PREFMIX_CHECK_INPUT(!in.bad(), path, ": read error");
  return CsvReader(ss.str(), path);
}

CsvReader::CsvReader(std::string text, std::string source)
    : text_(std::move(text)), source_(std::move(source)) {
  // A UTF-8 byte-order mark (Excel writes one) is not part of the first field.
  if (text_.size() >= 3 && static_cast<unsigned char>(text_[0]) == 0xEF &&
      static_cast<unsigned char>(text_[1]) == 0xBB &&
      static_cast<unsigned char>(text_[2]) == 0xBF) {
    pos_ = 3;
  }
}

bool CsvReader::Next(std::vector<std::string>* fields) {
  fields->clear();
  const size_t n = text_.size();
  // Skip blank lines (a record never starts with a line break; "" is a one-field record).
  while (pos_ < n && (text_[pos_] == '\n' || text_[pos_] == '\r')) {
    if (text_[pos_] == '\r' && pos_ + 1 < n && text_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++cur_line_;
  }
  if (pos_ >= n) return false;
  record_line_ = cur_line_;
  std::string field;
  while (true) {
    if (pos_ < n && text_[pos_] == '"') {
      const int64_t quote_line = cur_line_;
      ++pos_;
      while (true) {
        PREFMIX_CHECK_INPUT(pos_ < n, source_, ": line ", quote_line, ", field ",
                            fields->size() + 1, ": quoted field is never closed (value so far ",
                            QuoteValue(field), ")");
        const char c = text_[pos_];
        if (c == '"') {
          if (pos_ + 1 < n && text_[pos_ + 1] == '"') {
            field.push_back('"');
            pos_ += 2;
            continue;
          }
          ++pos_;
          break;
        }
        // Line breaks inside quotes belong to the value; count them for later line numbers.
        if (c == '\n') ++cur_line_;
        if (c == '\r' && !(pos_ + 1 < n && text_[pos_ + 1] == '\n')) ++cur_line_;
        field.push_back(c);
        ++pos_;
      }
      PREFMIX_CHECK_INPUT(
          pos_ >= n || text_[pos_] == ',' || text_[pos_] == '\n' || text_[pos_] == '\r', source_,
          ": line ", cur_line_, ", field ", fields->size() + 1, ": character ",
          QuoteValue(std::string_view(&text_[pos_], 1)), " after the closing quote of ",
          QuoteValue(field), " (a quoted field must end at a comma or line end)");
    } else {
      // Unquoted field. A stray quote inside it is taken literally (as Python's csv does).
      const size_t start = pos_;
      while (pos_ < n && text_[pos_] != ',' && text_[pos_] != '\n' && text_[pos_] != '\r') ++pos_;
      field.assign(text_, start, pos_ - start);
    }
    fields->push_back(std::move(field));
    field.clear();
    if (pos_ >= n) return true;
    const char c = text_[pos_];
    if (c == ',') {
      ++pos_;
      continue;
    }
    // c is '\r' or '\n': end of record (CRLF, LF or a lone CR).
    if (c == '\r' && pos_ + 1 < n && text_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++cur_line_;
    return true;
  }
}

namespace {

CsvTable ReadTable(CsvReader* reader) {
  CsvTable table;
  table.source = reader->source();
  PREFMIX_CHECK_INPUT(reader->Next(&table.header), reader->source(),
                      ": line 1: empty file (expected a header)");
  std::vector<std::string> fields;
  while (reader->Next(&fields)) {
    table.rows.push_back(fields);
    table.lines.push_back(reader->line());
  }
  return table;
}

}  // namespace

CsvTable ParseCsv(std::string text, const std::string& source) {
  CsvReader reader(std::move(text), source);
  return ReadTable(&reader);
}

CsvTable ReadCsvFile(const std::string& path) {
  CsvReader reader = CsvReader::FromFile(path);
  return ReadTable(&reader);
}

std::string QuoteValue(std::string_view value) {
  constexpr size_t kMaxBytes = 80;
  std::string out = "'";
  size_t shown = value.size() > kMaxBytes ? kMaxBytes : value.size();
  // Do not cut a UTF-8 sequence in two; escape every non-ASCII byte of malformed UTF-8 so the
  // message itself stays valid UTF-8.
  while (shown > 0 && shown < value.size() &&
         (static_cast<unsigned char>(value[shown]) & 0xC0) == 0x80) {
    --shown;
  }
  const bool escape_high = !IsValidUtf8(value.substr(0, shown));
  for (size_t i = 0; i < shown; ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\'':
        out += "\\'";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c == 0x7F || (escape_high && c >= 0x80)) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\x";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  if (shown < value.size()) out += "...";
  out += "'";
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // the sequence runs past the end
    for (int k = 1; k <= extra; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

std::string JoinFields(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ",";
    out += fields[i];
  }
  return out;
}

}  // namespace prefmix
