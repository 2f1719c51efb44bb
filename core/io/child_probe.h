#pragma once
// Reading a file through a library that may crash on corrupt input (libhdf5 1.10.8 segfaults,
// loops or allocates gigabytes on some corrupt .h5 files: bench/results/2026-12-fuzz.md) without
// letting it take the process down: the read runs once in a forked child first. Only when the
// child finishes does the caller read the file itself.
#include <functional>
#include <string>

#include "core/error.h"

namespace prefmix {

/// The read in the child crashed, ran out of time or memory, or threw something other than
/// prefmix::Error: the file is corrupt in a way the library reading it does not survive.
class ProbeAborted : public Error {
 public:
  using Error::Error;
};

/// Runs `probe` (a read of `path`) in a forked child process and waits for it.
/// - The child returns: nothing happens (the caller then reads the file in-process).
/// - `probe` throws prefmix::Error: the same message is thrown here.
/// - The child dies (signal, sanitizer report), runs out of memory, throws another exception or
///   is still running after `timeout_s` seconds (it is then killed): ProbeAborted naming `path`
///   and what happened.
/// Nothing of the child's work reaches this process. If fork itself fails, `probe` is not run
/// and nothing is thrown (the caller's in-process read is then unguarded).
/// `timeout_s` <= 0: no time limit. `memory_bytes` > 0: the child's address space may grow by
/// that much (RLIMIT_AS; not applied under AddressSanitizer), so that an absurd allocation
/// fails there instead of taking the machine's memory.
void ProbeInChild(const std::string& path, const std::function<void()>& probe, double timeout_s,
                  double memory_bytes = 0);

/// Whether ProbeInChild applies its address-space cap: false in a build with AddressSanitizer.
bool MemoryCapApplies();

/// The memory ProbeInChild lets a read of a file of `bytes` bytes take: 2 GiB plus 16 times the
/// file's size (compressed datasets expand; a corrupt size field asks for far more).
double ReadMemoryFor(double bytes);

/// The time limit ProbeInChild gets for reading a file of `bytes` bytes: 10 s plus 1 s per 5 MB,
/// or PREFMIX_READ_TIMEOUT seconds when that is set (0: no limit). Throws prefmix::Error
/// naming the variable and value if it is not a number >= 0.
double ReadTimeoutFor(double bytes);

}  // namespace prefmix
