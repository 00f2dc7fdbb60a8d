#include "event_clock.h"

#include "encoder.h"  // kMinEpochMs

namespace fw {

Status EventClock::set(int64_t mono_ms, int64_t epoch_ms) {
  if (epoch_ms < kMinEpochMs) return Status::kInvalidArgument;
  const int64_t offset = epoch_ms - mono_ms;
  if (set_) {
    const int64_t delta = offset - offset_ms_;
    if (delta > jump_threshold_ms_ || delta < -jump_threshold_ms_) {
      ++jumps_;
      last_jump_ms_ = delta;
    }
  }
  offset_ms_ = offset;
  set_ = true;
  return Status::kOk;
}

}  // namespace fw
