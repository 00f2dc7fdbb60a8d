#include "profiles.h"

#include <cstring>

namespace fw {

namespace {

ChannelConfig ch(Sensor s, float lo, float hi, float alarm_high = NAN, float alarm_low = NAN) {
  ChannelConfig c;
  c.sensor = s;
  c.min_valid = lo;
  c.max_valid = hi;
  c.alarm_high = alarm_high;
  c.alarm_low = alarm_low;
  return c;
}

// Valid ranges are physical / sensor limits, not alarm levels: a reading outside is a sensor
// fault. Temperatures: -40..125 covers the usual digital sensors (DS18B20, SHT3x); NAB "temp"
// is in an unknown unit (data 2..108), so it gets a wide range. Acceleration: +-50 g is a
// common MEMS / IEPE range (FEMTO peaks reach ~48 g). Humidity 0..100 %RH by definition.
// Light 0..100000 lux (direct sunlight). CO2 0..40000 ppm (Sensirion SCD30 range).
// Alarm levels: FEMTO bearing temperature 100 / 95 degrees C is a placeholder for a local
// alarm (PRONOSTIA stops tests on vibration, not temperature); none for the others.
const ChannelConfig kNab[] = {ch(Sensor::kTemp, -50.0f, 300.0f)};
const ChannelConfig kFemto[] = {
    ch(Sensor::kHRmsG, 0.0f, 50.0f), ch(Sensor::kVRmsG, 0.0f, 50.0f),
    ch(Sensor::kPeakAbsG, 0.0f, 50.0f), ch(Sensor::kTempC, -40.0f, 200.0f, 100.0f, 95.0f)};
const ChannelConfig kOccupancy[] = {
    ch(Sensor::kTempC, -40.0f, 125.0f), ch(Sensor::kHumidityPct, 0.0f, 100.0f),
    ch(Sensor::kLightLux, 0.0f, 100000.0f), ch(Sensor::kCo2Ppm, 0.0f, 40000.0f),
    ch(Sensor::kHumidityRatio, 0.0f, 0.1f)};

const Profile kProfiles[] = {
    {"nab-machine", kNab, sizeof(kNab) / sizeof(kNab[0])},
    {"femto-b1_1", kFemto, sizeof(kFemto) / sizeof(kFemto[0])},
    {"occupancy-office", kOccupancy, sizeof(kOccupancy) / sizeof(kOccupancy[0])},
};

}  // namespace

const Profile* find_profile(const char* name) {
  for (const Profile& p : kProfiles)
    if (name != nullptr && std::strcmp(p.name, name) == 0) return &p;
  return nullptr;
}

const Profile* profiles(size_t* n) {
  *n = sizeof(kProfiles) / sizeof(kProfiles[0]);
  return kProfiles;
}

}  // namespace fw
