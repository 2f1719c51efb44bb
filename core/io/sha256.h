#pragma once
// SHA-256 (FIPS 180-4), for the dataset hash in provenance.
#include <cstddef>
#include <cstdint>
#include <string>

namespace prefmix {

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  /// Feeds n bytes.
  void Update(const uint8_t* data, size_t n);
  /// Finishes and returns the digest as 64 lowercase hex characters.
  std::string HexDigest();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

}  // namespace prefmix
