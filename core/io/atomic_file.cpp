#include "core/io/atomic_file.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <utility>

#include "core/error.h"

namespace prefmix {
namespace {

std::mutex& InputsMutex() {
  static std::mutex m;
  return m;
}
std::set<std::pair<dev_t, ino_t>>& Inputs() {
  static std::set<std::pair<dev_t, ino_t>> s;
  return s;
}

// Temporary paths the signal handler removes: fixed slots it can read without allocating or
// locking (only async-signal-safe calls run in the handler).
constexpr int kSlots = 64;
constexpr size_t kPathMax = 4096;
struct TempSlot {
  std::atomic<bool> used{false};
  char path[kPathMax];
};
TempSlot g_slots[kSlots];

int AcquireSlot(const std::string& path) {
  if (path.size() >= kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (g_slots[i].used.load() || !g_slots[i].used.compare_exchange_strong(expected, true))
      continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    return i;
  }
  return -1;  // more than 64 outputs open at once: not removed on a signal (never happens)
}

void ReleaseSlot(int i) {
  if (i >= 0) g_slots[i].used.store(false);
}

extern "C" void CleanupAndExit(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_slots[i].used.load()) ::unlink(g_slots[i].path);
  const char* msg = sig == SIGINT ? "prefmix: interrupted (SIGINT); partial outputs removed\n"
                                  : "prefmix: terminated (SIGTERM); partial outputs removed\n";
  if (::write(2, msg, std::strlen(msg)) < 0) {
  }
  ::_exit(128 + sig);
}

}  // namespace

void InstallSignalCleanup() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = CleanupAndExit;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void NoteInput(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return;  // the reader reports a missing file itself
  std::lock_guard<std::mutex> lock(InputsMutex());
  Inputs().insert({st.st_dev, st.st_ino});
}

void CheckOutputPath(const std::string& path) {
  namespace fs = std::filesystem;
  PREFMIX_CHECK_INPUT(!path.empty(), "empty output path");
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  PREFMIX_CHECK_INPUT(fs::is_directory(dir, ec), path, ": output directory '", dir.string(),
                      "' does not exist");
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;  // a new file
  PREFMIX_CHECK_INPUT(!S_ISLNK(st.st_mode), path,
                      ": output path is a symbolic link; prefmix replaces an output whole and "
                      "will not write through a link (give the link's target or a new path)");
  PREFMIX_CHECK_INPUT(!S_ISDIR(st.st_mode), path, ": output path is a directory");
  PREFMIX_CHECK_INPUT(S_ISREG(st.st_mode), path,
                      ": output path exists and is not a regular file (a FIFO, socket or "
                      "device); give a new path");
  bool is_input = false;
  {
    std::lock_guard<std::mutex> lock(InputsMutex());
    is_input = Inputs().count({st.st_dev, st.st_ino}) > 0;
  }
  PREFMIX_CHECK_INPUT(!is_input, path,
                      ": output path is also an input of this command and would be overwritten; "
                      "write the output to another path");
}

AtomicOutput::AtomicOutput(std::string final_path) : final_(std::move(final_path)) {
  CheckOutputPath(final_);
  temp_ = final_ + ".tmp." + std::to_string(::getpid());
  slot_ = AcquireSlot(temp_);
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) std::remove(temp_.c_str());
  ReleaseSlot(slot_);
}

namespace {
OutputGroup* g_group = nullptr;

void RenameInto(const std::string& temp, const std::string& final_path) {
  CheckOutputPath(final_path);  // nothing may have replaced the output by a link or FIFO meanwhile
  if (std::rename(temp.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    std::remove(temp.c_str());
    throw Error(Cat(final_path, ": cannot write output (", std::strerror(err), ")"));
  }
}
}  // namespace

void AtomicOutput::Commit() {
  if (g_group != nullptr) {
    // The group renames it with the command's other outputs (or removes it).
    g_group->held_.push_back({temp_, final_, slot_});
  } else {
    RenameInto(temp_, final_);
    ReleaseSlot(slot_);
  }
  committed_ = true;
  slot_ = -1;
}

OutputGroup::OutputGroup() {
  PREFMIX_ASSERT(g_group == nullptr, "OutputGroup: one group at a time");
  g_group = this;
}

OutputGroup::~OutputGroup() {
  if (g_group == this) g_group = nullptr;
  for (const Held& h : held_) {
    std::remove(h.temp.c_str());
    ReleaseSlot(h.slot);
  }
}

void OutputGroup::Commit() {
  g_group = nullptr;
  std::vector<Held> held = std::move(held_);
  held_.clear();
  for (size_t i = 0; i < held.size(); ++i) {
    try {
      RenameInto(held[i].temp, held[i].final_path);
    } catch (...) {
      for (size_t k = i; k < held.size(); ++k) {
        std::remove(held[k].temp.c_str());
        ReleaseSlot(held[k].slot);
      }
      throw;
    }
    ReleaseSlot(held[i].slot);
  }
}

void WriteTextFileAtomic(const std::string& path, const std::string& text) {
  AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    PREFMIX_CHECK_INPUT(f, path, ": cannot open for writing");
    f << text;
    f.flush();
    PREFMIX_CHECK_INPUT(f, path, ": write failed");
  }
  out.Commit();
}

}  // namespace prefmix
