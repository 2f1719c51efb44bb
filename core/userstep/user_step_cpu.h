#pragma once
// The linear link's CPU loop (core/userstep/linear_cpu.h), built twice: for the library's
// baseline instruction set (x86-64-v2) and for x86-64-v3 (AVX2 and FMA), chosen when the program
// starts by what the CPU supports.
#include "core/userstep/user_step_raw.h"

namespace prefmix::cpu {

/// Solves every user of a linear-link problem (OpenMP over users), with the build the CPU
/// supports: x86-64-v3 where it has AVX2 and FMA. The environment variable PREFMIX_CPU_ISA
/// overrides: "base" (the baseline build everywhere; tests compare the two), "x86-64-v3", or
/// "auto" (the default); any other value, or x86-64-v3 on a CPU without it, throws
/// prefmix::Error naming the variable and value.
void SolveLinearUsers(const raw::UserStepArgs& a);

/// The build SolveLinearUsers runs on this machine: "x86-64-v3" or "base".
const char* LinearUserStepIsa();

/// The two builds (user_step_cpu.cpp, user_step_cpu_v3.cpp); the v3 one only where the CPU
/// supports it.
void SolveLinearUsersBase(const raw::UserStepArgs& a);
void SolveLinearUsersV3(const raw::UserStepArgs& a);

}  // namespace prefmix::cpu
