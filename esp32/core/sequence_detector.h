// "Vibration spike, then a temperature rise of at least X within T" as a state machine.
// Mirrors the server-side bearing rule (sql/rules/bearing_failure.sql: spike, then a rise of >= X degrees C within
// 60 s) so a node can raise a local alarm while offline.
#pragma once
#include <cmath>
#include <cstdint>

#include "status.h"

namespace fw {

/// Parameters of SequenceDetector.
struct SequenceConfig {
  int64_t window_ms = 60000;  ///< T: the rise must come at most this long after the spike (ms)
  float min_rise = 1.0f;      ///< X: rise over the temperature at the spike (degrees C)
};

/// States: kIdle --spike--> kArmed --(temp - base >= X and t - t_spike <= T)--> match, kIdle
///                          kArmed --(t - t_spike > T)--> kIdle (expired)
/// base = the last temperature seen at or before the spike (or the first one after it when
/// none was seen yet). A new spike while armed re-arms at the new time and keeps the lower
/// base, so no rise that either spike would have matched is lost.
/// Edge: a rise at exactly t_spike + T matches; at t_spike + T + 1 ms it does not.
/// Times are ms on a monotonic clock (use the device's uptime, not the wall clock, so an SNTP
/// jump cannot open or close the window).
class SequenceDetector {
 public:
  enum class State : uint8_t { kIdle, kArmed };

  /// Returns kInvalidArgument unless window_ms >= 0 and min_rise is finite and > 0.
  Status configure(const SequenceConfig& c) {
    if (c.window_ms < 0 || !std::isfinite(c.min_rise) || !(c.min_rise > 0.0f)) {
      return Status::kInvalidArgument;
    }
    cfg_ = c;
    state_ = State::kIdle;
    return Status::kOk;
  }

  /// A vibration spike was detected at ts_ms (the caller decides what a spike is).
  void on_spike(int64_t ts_ms) {
    expire(ts_ms);
    if (state_ == State::kIdle) {
      base_ = have_temp_ ? last_temp_ : NAN;
    } else if (have_temp_ && (std::isnan(base_) || last_temp_ < base_)) {
      base_ = last_temp_;
    }
    state_ = State::kArmed;
    spike_ms_ = ts_ms;
  }

  /// A temperature sample (degrees C) at ts_ms. Returns true when it completes the sequence
  /// (the detector goes back to kIdle). Non-finite temperatures are ignored (false).
  bool on_temperature(int64_t ts_ms, float temp_c) {
    if (!std::isfinite(temp_c)) return false;
    expire(ts_ms);
    bool match = false;
    if (state_ == State::kArmed && ts_ms >= spike_ms_) {
      if (std::isnan(base_)) {
        base_ = temp_c;  // no temperature before the spike: the first one after is the base
      } else if (temp_c - base_ >= cfg_.min_rise) {
        match = true;
        ++matches_;
        state_ = State::kIdle;
      }
    }
    last_temp_ = temp_c;
    have_temp_ = true;
    return match;
  }

  State state() const { return state_; }
  uint32_t matches() const { return matches_; }

 private:
  void expire(int64_t now_ms) {
    if (state_ == State::kArmed && now_ms - spike_ms_ > cfg_.window_ms) state_ = State::kIdle;
  }
  SequenceConfig cfg_;
  State state_ = State::kIdle;
  int64_t spike_ms_ = 0;
  float base_ = NAN;
  float last_temp_ = NAN;
  bool have_temp_ = false;
  uint32_t matches_ = 0;
};

}  // namespace fw
