// Event time: device uptime (monotonic ms) + an offset learnt from SNTP.
#pragma once
#include <cstdint>

#include "status.h"

namespace fw {

/// Maps monotonic uptime ms to epoch ms. Until set() is called with a plausible time
/// (>= 2020-01-01, the bridge's floor), the clock is "not set" and readings must be held
/// rather than stamped 1970. A later set() that moves the offset by more than
/// jump_threshold_ms is a clock jump: the new offset is applied at once (a step, not a slew),
/// jumps() counts it, and messages already stamped keep their stamps. Stamps may therefore go
/// backwards after a backward jump; seq still increases, and downstream orders by event time.
class EventClock {
 public:
  explicit EventClock(int64_t jump_threshold_ms = 1000) : jump_threshold_ms_(jump_threshold_ms) {}
  /// The wall clock read epoch_ms (epoch ms, UTC) at uptime mono_ms.
  /// Returns kInvalidArgument (ignored) for epoch_ms < 2020-01-01; kOk otherwise.
  Status set(int64_t mono_ms, int64_t epoch_ms);
  /// Epoch ms for uptime mono_ms into *epoch_ms; kClockNotSet before the first set().
  Status to_epoch(int64_t mono_ms, int64_t* epoch_ms) const {  // inline: once per sample
    if (!set_) return Status::kClockNotSet;
    *epoch_ms = mono_ms + offset_ms_;
    return Status::kOk;
  }
  bool is_set() const { return set_; }
  uint32_t jumps() const { return jumps_; }
  /// Offset change of the last jump, ms (positive = the clock moved forward).
  int64_t last_jump_ms() const { return last_jump_ms_; }

 private:
  int64_t jump_threshold_ms_;
  int64_t offset_ms_ = 0;
  bool set_ = false;
  uint32_t jumps_ = 0;
  int64_t last_jump_ms_ = 0;
};

}  // namespace fw
