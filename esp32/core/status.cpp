#include "status.h"

namespace fw {

const char* status_name(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kDroppedOldest: return "dropped_oldest";
    case Status::kFull: return "full";
    case Status::kEmpty: return "empty";
    case Status::kNotFinite: return "not_finite";
    case Status::kOutOfRange: return "out_of_range";
    case Status::kOutOfOrder: return "out_of_order";
    case Status::kInvalidArgument: return "invalid_argument";
    case Status::kBufferTooSmall: return "buffer_too_small";
    case Status::kWarmingUp: return "warming_up";
    case Status::kWindowClosed: return "window_closed";
    case Status::kClockNotSet: return "clock_not_set";
    case Status::kHeld: return "held";
    case Status::kStorageError: return "storage_error";
    case Status::kNotFound: return "not_found";
  }
  return "unknown";
}

}  // namespace fw
