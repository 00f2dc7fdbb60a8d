#include "data_source.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace fw {

namespace {

constexpr int64_t kWeekMs = 7LL * 24 * 3600 * 1000;

// Days since 1970-01-01 of a civil date (H. Hinnant, "chrono-Compatible Low-Level Date
// Algorithms", days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// Splits a CSV line on commas, stripping double quotes.
std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == ',') {
      out.emplace_back();
    } else if (c != '"' && c != '\r') {
      out.back().push_back(c);
    }
  }
  return out;
}

bool to_double(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end != s.c_str() && *end == '\0';
}

// Reads a CSV file with a header; calls row(fields) per data line.
template <typename F>
bool read_csv(const std::string& path, size_t min_fields, std::string* error, F row) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot open " + path;
    return false;
  }
  std::string line;
  std::getline(in, line);  // header
  size_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line == "\r") continue;
    const auto f = split(line);
    if (f.size() < min_fields || !row(f)) {
      *error = path + ":" + std::to_string(lineno) + ": malformed line";
      return false;
    }
  }
  return true;
}

DataRow make_row(int64_t ts, std::initializer_list<std::pair<Sensor, double>> values) {
  DataRow r;
  r.event_ms = ts;
  for (const auto& v : values) {
    r.readings[r.count++] = Reading{static_cast<float>(v.second), v.first};
  }
  return r;
}

}  // namespace

bool parse_utc_datetime(const char* s, int64_t* epoch_ms) {
  int y, mo, d, h, mi;
  double sec;
  if (std::sscanf(s, "%d-%d-%d %d:%d:%lf", &y, &mo, &d, &h, &mi, &sec) != 6) return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
      sec >= 61) {
    return false;
  }
  const int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  *epoch_ms = (days * 86400 + h * 3600 + mi * 60) * 1000 + std::llround(sec * 1000.0);
  return true;
}

int64_t replay_shift_ms(int64_t last_event_ms, int64_t now_ms) {
  // smallest k with last + k*W >= now - W; then last + k*W < now
  const int64_t k = -floor_div(-(now_ms - kWeekMs - last_event_ms), kWeekMs);
  return k * kWeekMs;
}

bool load_profile_data(const std::string& profile, const std::string& data_dir,
                       std::vector<DataRow>* rows, std::string* error) {
  rows->clear();
  if (profile == "nab-machine") {
    return read_csv(data_dir + "/nab/machine_temperature_system_failure.csv", 2, error,
                    [&](const std::vector<std::string>& f) {
                      int64_t ts;
                      double v;
                      if (!parse_utc_datetime(f[0].c_str(), &ts) || !to_double(f[1], &v))
                        return false;
                      rows->push_back(make_row(ts, {{Sensor::kTemp, v}}));
                      return true;
                    });
  }
  if (profile == "occupancy-office") {
    return read_csv(data_dir + "/occupancy/datatraining.txt", 7, error,
                    [&](const std::vector<std::string>& f) {
                      int64_t ts;
                      double t, h, l, c, hr;
                      if (!parse_utc_datetime(f[1].c_str(), &ts) || !to_double(f[2], &t) ||
                          !to_double(f[3], &h) || !to_double(f[4], &l) || !to_double(f[5], &c) ||
                          !to_double(f[6], &hr))
                        return false;
                      rows->push_back(make_row(ts, {{Sensor::kTempC, t},
                                                    {Sensor::kHumidityPct, h},
                                                    {Sensor::kLightLux, l},
                                                    {Sensor::kCo2Ppm, c},
                                                    {Sensor::kHumidityRatio, hr}}));
                      return true;
                    });
  }
  if (profile == "femto-b1_1") {
    std::vector<DataRow> vib, temp;
    auto tod = [](const std::string& s, int64_t* ts) {
      double t;
      if (!to_double(s, &t)) return false;
      *ts = kFemtoDay0Ms + std::llround(t * 1000.0);
      return true;
    };
    if (!read_csv(data_dir + "/femto/Bearing1_1_vibration.csv", 5, error,
                  [&](const std::vector<std::string>& f) {
                    int64_t ts;
                    double h, v, p;
                    if (!tod(f[1], &ts) || !to_double(f[2], &h) || !to_double(f[3], &v) ||
                        !to_double(f[4], &p))
                      return false;
                    vib.push_back(make_row(
                        ts, {{Sensor::kHRmsG, h}, {Sensor::kVRmsG, v}, {Sensor::kPeakAbsG, p}}));
                    return true;
                  }))
      return false;
    if (!read_csv(data_dir + "/femto/Bearing1_1_temperature.csv", 3, error,
                  [&](const std::vector<std::string>& f) {
                    int64_t ts;
                    double t;
                    if (!tod(f[1], &ts) || !to_double(f[2], &t)) return false;
                    temp.push_back(make_row(ts, {{Sensor::kTempC, t}}));
                    return true;
                  }))
      return false;
    // merge in file order by time; a vibration snapshot goes first on a tie
    size_t i = 0, j = 0;
    rows->reserve(vib.size() + temp.size());
    while (i < vib.size() || j < temp.size()) {
      if (j >= temp.size() || (i < vib.size() && vib[i].event_ms <= temp[j].event_ms)) {
        rows->push_back(vib[i++]);
      } else {
        rows->push_back(temp[j++]);
      }
    }
    return true;
  }
  *error = "unknown profile " + profile + " (nab-machine, femto-b1_1, occupancy-office)";
  return false;
}

}  // namespace fw
