// Readings and messages as the firmware holds them (fixed size, no heap).
#pragma once
#include <cstddef>
#include <cstdint>

namespace fw {

/// Sensor names of docs/CONTRACT.md. The suffix of the name gives the unit.
enum class Sensor : uint8_t {
  kTemp = 0,       ///< "temp": NAB machine temperature (unit not stated, likely degrees F)
  kTempC,          ///< "temp_c": degrees C
  kHRmsG,          ///< "h_rms_g": horizontal vibration RMS over a 0.1 s snapshot, g
  kVRmsG,          ///< "v_rms_g": vertical vibration RMS, g
  kPeakAbsG,       ///< "peak_abs_g": largest absolute acceleration sample in the snapshot, g
  kHumidityPct,    ///< "humidity_pct": % relative humidity
  kLightLux,       ///< "light_lux": lux
  kCo2Ppm,         ///< "co2_ppm": ppm
  kHumidityRatio,  ///< "humidity_ratio": kg water / kg dry air
  kCount
};

/// Contract name of a sensor ("temp_c", ...); "?" for an invalid value.
const char* sensor_name(Sensor s);
/// SenML (RFC 8428 / RFC 8798) unit of a sensor, or nullptr when no registered unit fits
/// exactly (g, the NAB "temp" of unknown unit, humidity ratio).
const char* sensor_senml_unit(Sensor s);

/// Readings per message; the largest demo profile (occupancy) has 5.
constexpr size_t kMaxReadings = 6;

/// One sensor value. value is in the sensor's unit (see Sensor).
struct Reading {
  float value;
  Sensor sensor;
};

/// One telemetry message: what becomes one MQTT publish.
struct Message {
  uint64_t seq = 0;  ///< per-device sequence number (SeqCounter)
  int64_t ts = 0;    ///< epoch ms once stamped; uptime ms while held (clock not set)
  uint8_t count = 0; ///< used entries of readings
  uint8_t flags = 0; ///< outbox bookkeeping (sent / acked)
  Reading readings[kMaxReadings] = {};
};

/// Firmware drop counters, reported in the "drops" object of the next payload (cumulative
/// since boot, so a lost payload loses no information).
struct DropCounters {
  uint32_t buffer = 0;   ///< samples lost because the sample buffer was full
  uint32_t outbox = 0;   ///< messages lost because the outbox was full (oldest dropped)
  uint32_t invalid = 0;  ///< readings rejected: NaN/inf or outside the sensor's valid range
  uint32_t clock = 0;    ///< messages lost while held waiting for the clock (held queue full)
  uint32_t storage = 0;  ///< messages lost because the sequence number could not be persisted
};

}  // namespace fw
