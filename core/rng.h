#pragma once
// Deterministic random numbers. Every random choice in prefmix derives from an explicit seed;
// streams are split by hashing (seed, purpose, index) so results do not depend on thread order.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace prefmix {

/// SplitMix64 finaliser: a good 64-bit mix for deriving sub-seeds.
inline uint64_t MixSeed(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Sub-seed for (seed, stream, index), e.g. DeriveSeed(seed, kSplitStream, user).
inline uint64_t DeriveSeed(uint64_t seed, uint64_t stream, uint64_t index = 0) {
  return MixSeed(MixSeed(seed ^ MixSeed(stream)) ^ MixSeed(index + 0x51ed27ULL));
}

/// The generator used everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  uint64_t NextU64() { return gen_(); }
  /// Uniform in [0, 1).
  double Uniform() { return (gen_() >> 11) * (1.0 / 9007199254740992.0); }
  /// Uniform integer in [0, n).
  uint64_t Below(uint64_t n) {
    // Lemire-style rejection-free enough for our n (< 2^40): use 128-bit multiply.
    return static_cast<uint64_t>((static_cast<unsigned __int128>(gen_()) * n) >> 64);
  }
  /// Standard normal (Box-Muller, deterministic across platforms with IEEE doubles).
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = Uniform(), u2 = Uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }
  /// Gamma(shape, 1) (Marsaglia-Tsang), for Dirichlet draws.
  double Gamma(double shape) {
    if (shape < 1.0) return Gamma(shape + 1.0) * std::pow(Uniform() + 1e-300, 1.0 / shape);
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x = Normal(), v = 1.0 + c * x;
      if (v <= 0) continue;
      v = v * v * v;
      double u = Uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (std::log(u + 1e-300) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }
  /// In-place Fisher-Yates shuffle.
  template <typename T>
  void Shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[Below(i)]);
  }
  std::mt19937_64& engine() { return gen_; }

 private:
  std::mt19937_64 gen_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace prefmix
