#pragma once
// One function per subcommand, each in its own file (apps/cmd_<name>.cpp).
// argv[0] is the subcommand name. Return the process exit code; throw prefmix::Error for bad input.
namespace prefmix::apps {
int RunImport(int argc, char** argv);
int RunGenerate(int argc, char** argv);
int RunInspect(int argc, char** argv);
int RunTrain(int argc, char** argv);
int RunEval(int argc, char** argv);
int RunAdapt(int argc, char** argv);
int RunScore(int argc, char** argv);
int RunSelect(int argc, char** argv);
int RunExperiment(int argc, char** argv);
int RunDemo(int argc, char** argv);
int RunFairness(int argc, char** argv);
int RunOptions(int argc, char** argv);
/// `experiment --grid`: called by RunExperiment when --grid is given (apps/cmd_grid.cpp).
int RunGridExperiment(int argc, char** argv);
int RunGridMerge(int argc, char** argv);
}  // namespace prefmix::apps
