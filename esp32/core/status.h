// Status codes of the portable firmware core. No exceptions are used: every fallible call
// returns one of these values.
#pragma once
#include <cstdint>

namespace fw {

/// Result of a core call. kOk and the informational values (kDroppedOldest, kWarmingUp,
/// kWindowClosed, kHeld) mean the call did its job; the others mean nothing was changed
/// unless the function's doc says otherwise.
enum class Status : uint8_t {
  kOk = 0,
  kDroppedOldest,    ///< stored, but the oldest element was overwritten (and counted)
  kFull,             ///< container full, new element rejected (and counted)
  kEmpty,            ///< nothing to pop / peek
  kNotFinite,        ///< NaN or +-inf sample, rejected
  kOutOfRange,       ///< sample outside the sensor's valid range, rejected
  kOutOfOrder,       ///< timestamp older than the previous one, rejected
  kInvalidArgument,  ///< bad configuration or argument
  kBufferTooSmall,   ///< output buffer too small; output is not usable
  kWarmingUp,        ///< detector still learning its baseline; no verdict yet
  kWindowClosed,     ///< a tumbling window closed; its result was written out
  kClockNotSet,      ///< wall clock not set yet (no SNTP time)
  kHeld,             ///< reading accepted and held until the clock is set
  kStorageError,     ///< persistent storage failed
  kNotFound,         ///< persistent value absent (first boot)
};

/// Short stable name of a status ("ok", "full", ...), for logs.
const char* status_name(Status s);

/// True for kOk and the informational values listed in Status' doc.
constexpr bool ok(Status s) {
  return s == Status::kOk || s == Status::kDroppedOldest || s == Status::kWarmingUp ||
         s == Status::kWindowClosed || s == Status::kHeld;
}

}  // namespace fw
