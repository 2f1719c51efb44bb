#pragma once
// Output files that appear whole or not at all: write to PATH.tmp.<pid>, rename on Commit().
#include <string>

namespace prefmix {

/// A temporary path beside `final_path`; removed in the destructor unless Commit() succeeded.
class AtomicOutput {
 public:
  explicit AtomicOutput(std::string final_path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  /// Where to write.
  const std::string& temp_path() const { return temp_; }
  /// Renames the temporary file to the final path (throws prefmix::Error on failure).
  void Commit();

 private:
  std::string final_;
  std::string temp_;
  bool committed_ = false;
};

/// Writes `text` to `path` atomically.
void WriteTextFileAtomic(const std::string& path, const std::string& text);

}  // namespace prefmix
