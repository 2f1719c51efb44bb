#pragma once
// Output files that appear whole or not at all: write to PATH.tmp.<pid>, rename on Commit().
// And the one output-path guard every command shares: readers note each file they open
// (NoteInput), and an output is refused before anything is written when it is one of them, a
// symbolic link, or not a regular file (a FIFO, a device).
#include <string>
#include <vector>

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
  int slot_ = -1;  ///< the signal handler's record of temp_ (see InstallSignalCleanup)
};

/// Makes a command's outputs all-or-nothing. While a group is alive, AtomicOutput::Commit()
/// hands its finished temporary file to the group instead of renaming it; the group's Commit()
/// renames them all once every output has been written, and a group destroyed without it (an
/// error, an exception) removes them, so that no output of the command appears. One group at a
/// time.
class OutputGroup {
 public:
  OutputGroup();
  ~OutputGroup();
  OutputGroup(const OutputGroup&) = delete;
  OutputGroup& operator=(const OutputGroup&) = delete;
  /// Renames every held output into place, in the order they were written (throws
  /// prefmix::Error naming the path when one cannot be).
  void Commit();

 private:
  friend class AtomicOutput;
  struct Held {
    std::string temp, final_path;
    int slot;
  };
  std::vector<Held> held_;
};

/// Records that this process reads `path` (by device and inode, so that other spellings of the
/// same file, hard links and symbolic links to it, are recognised). Called by every reader.
void NoteInput(const std::string& path);

/// Throws prefmix::Error (naming the path) when the directory of `path` does not exist, or
/// `path` exists and is an input noted by this process, a symbolic link, a directory or not a
/// regular file. AtomicOutput calls it; commands call it
/// again right after reading their inputs so that they fail before long work.
void CheckOutputPath(const std::string& path);

/// Installs SIGINT / SIGTERM handlers that remove every AtomicOutput temporary file still open,
/// print one line on stderr and exit with 128 + the signal (130, 143). The CLI calls it once.
void InstallSignalCleanup();

/// Writes `text` to `path` atomically.
void WriteTextFileAtomic(const std::string& path, const std::string& text);

}  // namespace prefmix
