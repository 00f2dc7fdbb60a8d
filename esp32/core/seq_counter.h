// Per-device sequence numbers that increase monotonically across reboots.
#pragma once
#include <cstdint>

#include "status.h"

namespace fw {

/// Persistent storage for one 64-bit value. Board: NVS (board/nvs_seq_storage.h); host: a
/// file (host/file_seq_storage.h); tests: in memory.
class SeqStorage {
 public:
  virtual ~SeqStorage() = default;
  /// Reads the stored value. kNotFound on first boot, kStorageError on failure.
  virtual Status load(uint64_t* value) = 0;
  /// Stores value durably (it must survive a power cut once this returns kOk).
  virtual Status store(uint64_t value) = 0;
};

/// Hands out sequence numbers. To spare flash, it persists a reservation mark
/// ("numbers below this may have been used") once per `block` numbers instead of every number:
/// after a reboot it resumes at the mark, so numbers stay strictly increasing across reboots
/// and at most block - 1 numbers are skipped per reboot. block = 1 persists every number.
/// With NVS (4 KB pages, ~100k erase cycles) block = 64 turns 1 msg/s into one write a minute.
class SeqCounter {
 public:
  /// Loads the mark (kNotFound -> starts at 0). Returns kInvalidArgument for a null storage or
  /// block == 0, kStorageError if the storage cannot be read (the counter is then unusable).
  Status init(SeqStorage* storage, uint32_t block);
  /// Writes the next number to *out. kStorageError (nothing handed out) when a needed
  /// reservation cannot be persisted; kInvalidArgument before a successful init().
  Status next(uint64_t* out) {  // inline: once per message; storage only once per block
    if (storage_ == nullptr) return Status::kInvalidArgument;
    if (next_ >= reserved_ && reserve() != Status::kOk) return Status::kStorageError;
    *out = next_++;
    return Status::kOk;
  }
  /// The number next() would hand out.
  uint64_t peek() const { return next_; }

 private:
  /// Persists the next reservation mark (next_ + block_). kStorageError if that fails.
  Status reserve();

  SeqStorage* storage_ = nullptr;
  uint32_t block_ = 0;
  uint64_t next_ = 0;
  uint64_t reserved_ = 0;  // numbers < reserved_ are covered by the persisted mark
};

}  // namespace fw
