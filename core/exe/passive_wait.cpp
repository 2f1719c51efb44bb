// Linked into prefmix's executables only (the CLI, the test tiers, the benches), not into the
// library or the Python module: a shared object may not have a .preinit_array.
//
// OpenMP's worker threads spin between parallel regions by default (libgomp: OMP_WAIT_POLICY
// unset means spin for a while, then sleep). On a machine whose cores are shared (the tests
// running two at a time, a user's other work, libFuzzer beside a build) a spinning worker takes
// the core that the thread it waits for needs, and two threads end up slower than one
// (issue 21; figures in bench/RESULTS.md). libgomp reads the variable once, in its own
// initialiser, which runs before any initialiser of the executable or of the libraries that
// depend on it; a .preinit_array function runs before all of them. A value the user set is kept.
#include <cstdlib>

namespace {

void PreferPassiveWaiting(int, char**, char**) { setenv("OMP_WAIT_POLICY", "PASSIVE", 0); }

__attribute__((section(".preinit_array"),
               used)) void (*const kPreferPassiveWaiting)(int, char**,
                                                          char**) = &PreferPassiveWaiting;

}  // namespace
