#include "core/io/child_probe.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"

// Under libFuzzer the sanitizers' death callback saves the current input as a crash; a probe
// child that dies is not a crash of the harness (its parent reports it), so the child clears it.
extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace prefmix {
namespace {

// Exit codes of the probe child (anything else, or a signal, is a crash).
constexpr int kChildError = 70;      // prefmix::Error; its message follows on the pipe
constexpr int kChildNoMemory = 71;   // std::bad_alloc
constexpr int kChildException = 72;  // another exception; its what() follows on the pipe

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

/// Caps the child's address space at what it has now plus `extra` bytes, so that a corrupt size
/// field makes an allocation fail instead of taking the machine's memory. Not under
/// AddressSanitizer, whose shadow memory is terabytes of reserved address space.
void LimitMemory(double extra) {
  if (!MemoryCapApplies() || extra <= 0) return;
  long pages = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  if (pages <= 0) return;
  const double now = static_cast<double>(pages) * static_cast<double>(sysconf(_SC_PAGESIZE));
  const double cap = std::min(now + extra, 0x1p62);
  rlimit lim{static_cast<rlim_t>(cap), static_cast<rlim_t>(cap)};
  setrlimit(RLIMIT_AS, &lim);
}

[[noreturn]] void RunChild(int fd, const std::function<void()>& probe, double memory_bytes) {
  // The parent reports; the child only reads. Ctrl-C reaches both (one process group): the
  // parent's handler removes the temporary outputs, the child just stops.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  // A fatal signal just ends the child (no handler of the parent's, e.g. libFuzzer's, which
  // would save the input as the parent's crash).
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) signal(sig, SIG_DFL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
  // The parent prints the one line; a crash report of the child (a sanitizer's) is not output.
  const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
  }
  LimitMemory(memory_bytes);
  int code = 0;
  std::string msg;
  try {
    probe();
  } catch (const Error& e) {
    code = kChildError;
    msg = e.what();
  } catch (const std::bad_alloc&) {
    code = kChildNoMemory;
  } catch (const std::exception& e) {
    code = kChildException;
    msg = e.what();
  } catch (...) {
    code = kChildException;
    msg = "unknown exception";
  }
  for (size_t done = 0; done < msg.size();) {
    const ssize_t n = write(fd, msg.data() + done, msg.size() - done);
    if (n <= 0 && errno != EINTR) break;
    if (n > 0) done += static_cast<size_t>(n);
  }
  _exit(code);  // no atexit handlers, no library shutdown: nothing of the parent's is touched
}

std::string SignalName(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGABRT:
      return "SIGABRT";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGKILL:
      return "SIGKILL, out of memory?";
    default:
      return Cat("signal ", sig);
  }
}

}  // namespace

bool MemoryCapApplies() { return !kAddressSanitizer; }

double ReadMemoryFor(double bytes) { return 2.0 * (1 << 30) + 16.0 * bytes; }

double ReadTimeoutFor(double bytes) {
  if (const char* env = std::getenv("PREFMIX_READ_TIMEOUT")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    PREFMIX_CHECK_INPUT(end != env && *end == '\0' && std::isfinite(v) && v >= 0,
                        "PREFMIX_READ_TIMEOUT='", env, "' is not a number of seconds >= 0");
    return v;
  }
  return 10.0 + bytes / 5e6;
}

void ProbeInChild(const std::string& path, const std::function<void()>& probe, double timeout_s,
                  double memory_bytes) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return;
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (pid == 0) {
    close(fds[0]);
    RunChild(fds[1], probe, memory_bytes);
  }
  close(fds[1]);
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  std::string msg;
  bool timed_out = false;
  char buf[4096];
  while (true) {
    int wait_ms = -1;
    if (timeout_s > 0) {
      const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (left <= 0) {
        timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(std::ceil(std::min(left, 3600.0) * 1000));
    }
    pollfd p{fds[0], POLLIN, 0};
    const int r = poll(&p, 1, wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) continue;  // the loop's deadline check decides
    if (r < 0) break;
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child has exited (or closed the pipe)
    msg.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    throw ProbeAborted(Cat(path, ": reading it took longer than ", std::round(timeout_s * 10) / 10,
                           " s and was stopped (the HDF5 library loops on some corrupt files; "
                           "PREFMIX_READ_TIMEOUT sets the limit in seconds, 0 for none)"));
  }
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    if (code == 0) return;
    if (code == kChildError) throw Error(msg);
    if (code == kChildNoMemory)
      throw ProbeAborted(Cat(path, ": out of memory while reading it (a corrupt size field?)"));
    if (code == kChildException) throw ProbeAborted(Cat(path, ": cannot be read: ", msg));
    throw ProbeAborted(Cat(path, ": the HDF5 library failed while reading it (exit code ", code,
                           "); the file is corrupt"));
  }
  const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  throw ProbeAborted(Cat(path, ": the HDF5 library crashed while reading it (", SignalName(sig),
                         "); the file is corrupt"));
}

}  // namespace prefmix
