// The linear link's CPU loop built for x86-64-v3 (AVX2, FMA; CMakeLists.txt adds
// -march=x86-64-v3 to this file alone). Its inline functions live in the isa_v3 namespace
// (PREFMIX_ISA_NAMESPACE, core/userstep/math.h), apart from the baseline build's.
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#define PREFMIX_ISA_NAMESPACE isa_v3
#define PREFMIX_CPU_LOOP_NAME SolveLinearUsersV3
#include "core/userstep/user_step_cpu.inc"
#else
#include "core/userstep/user_step_cpu.h"
namespace prefmix::cpu {
// Not an x86-64-v3 build (another architecture or compiler): never chosen, but defined.
void SolveLinearUsersV3(const raw::UserStepArgs& a) { SolveLinearUsersBase(a); }
}  // namespace prefmix::cpu
#endif
