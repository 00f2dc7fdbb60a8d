// Host only: reads a project data file as the virtual node's sensor (docs/CONTRACT.md,
// "Demo devices" and "Replay time").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../core/message.h"

namespace fw {

/// One row of a data set: the original event time (epoch ms, UTC) and its readings.
struct DataRow {
  int64_t event_ms = 0;
  uint8_t count = 0;
  Reading readings[kMaxReadings] = {};
};

/// Loads the data of a profile ("nab-machine", "femto-b1_1", "occupancy-office") from
/// data_dir (the project's data/ folder), in event order as the files give it (FEMTO: the
/// vibration and temperature files merged by time; a vibration snapshot goes first on a tie).
/// Timestamps without a zone are UTC; FEMTO times of day are placed on 2012-03-01 UTC.
/// Returns false and sets *error on a missing file or a malformed line.
bool load_profile_data(const std::string& profile, const std::string& data_dir,
                       std::vector<DataRow>* rows, std::string* error);

/// Whole-week shift (ms) that moves last_event_ms into [now_ms - 1 week, now_ms), keeping
/// weekday and time of day (docs/CONTRACT.md "Replay time").
int64_t replay_shift_ms(int64_t last_event_ms, int64_t now_ms);

/// Epoch ms (UTC) of "YYYY-MM-DD HH:MM:SS" at s; false if malformed.
bool parse_utc_datetime(const char* s, int64_t* epoch_ms);

/// Epoch ms of 2012-03-01T00:00:00Z: FEMTO's nominal test day.
constexpr int64_t kFemtoDay0Ms = 1330560000000LL;

}  // namespace fw
