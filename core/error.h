#pragma once
// Two tiers of errors:
//  - prefmix::Error: bad user input (file, flag, value). The CLI maps it to exit code 1.
//  - prefmix::InternalError: a broken invariant inside prefmix. Exit code 2. Checked in Release
//  too.
#include <sstream>
#include <stdexcept>
#include <string>

namespace prefmix {

/// Bad input or usage: the message names the file/flag/field, the value and what is valid.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

/// A broken invariant inside prefmix (a bug), never caused by input alone.
class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& msg) : std::logic_error(msg) {}
};

namespace detail {
inline void AppendAll(std::ostringstream&) {}
template <typename T, typename... Rest>
void AppendAll(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  AppendAll(os, rest...);
}
}  // namespace detail

/// Concatenates the arguments with operator<< into one string.
template <typename... Args>
std::string Cat(const Args&... args) {
  std::ostringstream os;
  detail::AppendAll(os, args...);
  return os.str();
}

}  // namespace prefmix

/// Throws prefmix::Error(Cat(...)) unless cond holds.
#define PREFMIX_CHECK_INPUT(cond, ...)                                \
  do {                                                                \
    if (!(cond)) throw ::prefmix::Error(::prefmix::Cat(__VA_ARGS__)); \
  } while (0)

/// Throws prefmix::InternalError unless cond holds (active in Release builds).
#define PREFMIX_ASSERT(cond, ...)                                                             \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::prefmix::InternalError(::prefmix::Cat(__FILE__, ":", __LINE__, ": assertion '", \
                                                    #cond, "' failed. ", ##__VA_ARGS__));     \
  } while (0)
