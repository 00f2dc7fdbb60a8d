// Fixed-capacity circular buffer (no heap; storage is a member array).
#pragma once
#include <cstddef>
#include <cstdint>

#include "status.h"

namespace fw {

/// What push() does when the buffer is full.
enum class OverflowPolicy : uint8_t {
  kOverwriteOldest,  ///< store the new element, drop the oldest, count it
  kRejectNew,        ///< keep the buffer as is, drop the new element, count it
};

/// Circular FIFO of at most N elements of T, oldest first.
/// Shape: index 0 is the oldest element, size()-1 the newest. All operations are O(1).
/// Not thread-safe: on the board, guard it (e.g. portENTER_CRITICAL) when an ISR and the
/// loop share it.
template <typename T, size_t N, OverflowPolicy P>
class RingBuffer {
  static_assert(N > 0, "capacity must be > 0");

 public:
  /// Appends v. Returns kOk; when full: kDroppedOldest (kOverwriteOldest: v stored, oldest
  /// lost) or kFull (kRejectNew: v not stored). Either way dropped() grows by one.
  Status push(const T& v) {
    if (count_ == N) {
      ++dropped_;
      if (P == OverflowPolicy::kRejectNew) return Status::kFull;
      buf_[head_] = v;  // the oldest slot becomes the newest
      head_ = wrap(head_ + 1);
      return Status::kDroppedOldest;
    }
    buf_[wrap(head_ + count_)] = v;
    ++count_;
    return Status::kOk;
  }

  /// Removes the oldest element into *out (may be nullptr). kEmpty if there is none.
  Status pop(T* out) {
    if (count_ == 0) return Status::kEmpty;
    if (out != nullptr) *out = buf_[head_];
    head_ = wrap(head_ + 1);
    --count_;
    return Status::kOk;
  }

  /// Removes the newest element into *out (may be nullptr). kEmpty if there is none.
  Status pop_back(T* out) {
    if (count_ == 0) return Status::kEmpty;
    --count_;
    if (out != nullptr) *out = buf_[wrap(head_ + count_)];
    return Status::kOk;
  }

  /// Element i (0 = oldest). Precondition: i < size() (not checked in release builds).
  T& at(size_t i) { return buf_[wrap(head_ + i)]; }
  const T& at(size_t i) const { return buf_[wrap(head_ + i)]; }
  T& front() { return buf_[head_]; }
  const T& front() const { return buf_[head_]; }
  T& back() { return buf_[wrap(head_ + count_ - 1)]; }
  const T& back() const { return buf_[wrap(head_ + count_ - 1)]; }

  size_t size() const { return count_; }
  static constexpr size_t capacity() { return N; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == N; }
  /// Elements lost to overflow since construction or reset_dropped().
  uint32_t dropped() const { return dropped_; }
  void reset_dropped() { dropped_ = 0; }
  /// Empties the buffer (the drop counter is kept).
  void clear() { head_ = 0; count_ = 0; }

 private:
  static size_t wrap(size_t i) { return i >= N ? i - N : i; }
  T buf_[N] = {};
  size_t head_ = 0;
  size_t count_ = 0;
  uint32_t dropped_ = 0;
};

}  // namespace fw
