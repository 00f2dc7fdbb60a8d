#include <gtest/gtest.h>

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "encoder.h"
#include "test_support.h"

namespace fw {
namespace {

using test_support::msg;


struct NumCase {
  float v;
  const char* want;
};

TEST(Encoder, NumberFormatTable) {
  const NumCase cases[] = {
      {0.f, "0"},          {-0.f, "0"},        {1.f, "1"},
      {70.394f, "70.394"}, {-3.5f, "-3.5"},    {0.1f, "0.1"},
      {0.56175f, "0.56175"}, {47.849f, "47.849"}, {721.25f, "721.25"},
      {0.00479298817650529f, "0.004792988"}, {1234567.f, "1234567"}, {123456789.f, "123456792"},
      {9.999999f, "9.999999"}, {99.99999f, "99.99999"}, {1e-5f, "1e-05"}, {2.5e10f, "2.5e+10"},
  };
  for (const auto& c : cases) {
    char buf[32];
    const size_t n = format_number(c.v, buf);
    EXPECT_EQ(std::string(buf, n), c.want) << c.v;
  }
  char buf[32];
  EXPECT_EQ(format_number(NAN, buf), 0u);
  EXPECT_EQ(format_number(INFINITY, buf), 0u);
}

TEST(Encoder, NumbersRoundTripWithinFloatPrecision) {
  // 7 significant digits: relative error <= 5e-7 (float has ~7.2 digits)
  for (double e = -4.9; e < 8.9; e += 0.0137) {
    for (float sign : {1.f, -1.f}) {
      const float v = sign * static_cast<float>(std::pow(10.0, e));
      char buf[32];
      const size_t n = format_number(v, buf);
      buf[n] = '\0';
      const double back = std::strtod(buf, nullptr);
      EXPECT_NEAR(back, v, std::fabs(v) * 5.1e-7) << buf;
    }
  }
}

TEST(Encoder, ContractJsonExact) {
  const Message m = msg(42, 1767225600000, {{0.56f, Sensor::kHRmsG}, {0.43f, Sensor::kVRmsG}});
  DropCounters d;
  d.outbox = 3;
  char buf[256];
  size_t len = 0;
  ASSERT_EQ(encode_json("femto-b1_1", m, &d, buf, sizeof(buf), &len), Status::kOk);
  EXPECT_STREQ(buf,
               "{\"device_id\":\"femto-b1_1\",\"seq\":42,\"ts\":1767225600000,"
               "\"readings\":{\"h_rms_g\":0.56,\"v_rms_g\":0.43},"
               "\"drops\":{\"buffer\":0,\"outbox\":3,\"invalid\":0,\"clock\":0,\"storage\":0}}");
  EXPECT_EQ(len, std::strlen(buf));
  ASSERT_EQ(encode_json("n", msg(0, kMinEpochMs, {{1.f, Sensor::kTemp}}), nullptr, buf,
                        sizeof(buf), &len),
            Status::kOk);
  EXPECT_STREQ(buf, "{\"device_id\":\"n\",\"seq\":0,\"ts\":1577836800000,\"readings\":{\"temp\":1}}");
}

TEST(Encoder, SenmlExact) {
  const Message m =
      msg(7, 1767225600123, {{21.5f, Sensor::kTempC}, {0.56f, Sensor::kHRmsG}});
  char buf[512];
  size_t len = 0;
  ASSERT_EQ(encode_senml("dev1", m, nullptr, buf, sizeof(buf), &len), Status::kOk);
  EXPECT_STREQ(buf,
               "[{\"bn\":\"dev1:\",\"bt\":1767225600.123,\"n\":\"temp_c\",\"u\":\"Cel\",\"v\":21.5},"
               "{\"n\":\"h_rms_g\",\"v\":0.56},{\"n\":\"seq\",\"v\":7}]");
  DropCounters d;
  d.buffer = 1;
  ASSERT_EQ(encode(PayloadFormat::kSenml, "dev1", msg(8, 1767225600000, {{1, Sensor::kCo2Ppm}}),
                   &d, buf, sizeof(buf), &len),
            Status::kOk);
  EXPECT_NE(std::strstr(buf, "\"bt\":1767225600,\"n\":\"co2_ppm\",\"u\":\"ppm\""), nullptr) << buf;
  EXPECT_NE(std::strstr(buf, "{\"n\":\"drops_buffer\",\"v\":1}"), nullptr) << buf;
}

struct ErrCase {
  const char* name;
  const char* id;
  Message m;
  size_t cap;
  Status want;
};

TEST(Encoder, ErrorTable) {
  const Message good = msg(1, 1767225600000, {{1.f, Sensor::kTempC}});
  Message bad_sensor = good;
  bad_sensor.readings[0].sensor = Sensor::kCount;
  const std::string long_id(65, 'a');
  const ErrCase cases[] = {
      {"ok", "d", good, 256, Status::kOk},
      {"empty id", "", good, 256, Status::kInvalidArgument},
      {"id with slash", "a/b", good, 256, Status::kInvalidArgument},
      {"id with quote", "a\"b", good, 256, Status::kInvalidArgument},
      {"id 65 chars", long_id.c_str(), good, 256, Status::kInvalidArgument},
      {"no readings", "d", msg(1, 1767225600000, {}), 256, Status::kInvalidArgument},
      {"ts not stamped (uptime)", "d", msg(1, 123456, {{1.f, Sensor::kTempC}}), 256,
       Status::kInvalidArgument},
      {"NaN reading", "d", msg(1, 1767225600000, {{NAN, Sensor::kTempC}}), 256,
       Status::kNotFinite},
      {"bad sensor", "d", bad_sensor, 256, Status::kInvalidArgument},
      {"buffer too small", "d", good, 20, Status::kBufferTooSmall},
      {"buffer zero", "d", good, 0, Status::kBufferTooSmall},
  };
  for (const auto& c : cases) {
    char buf[256];
    size_t len = 99;
    EXPECT_EQ(encode_json(c.id, c.m, nullptr, buf, c.cap, &len), c.want) << c.name;
    EXPECT_EQ(encode_senml(c.id, c.m, nullptr, buf, c.cap, &len), c.want) << c.name;
  }
  EXPECT_TRUE(valid_device_id(std::string(64, 'a').c_str()));
  EXPECT_TRUE(valid_device_id("occupancy-office"));
}

TEST(Encoder, ExactFitBoundary) {
  const Message m = msg(1, 1767225600000, {{1.f, Sensor::kTempC}});
  char big[256];
  size_t len = 0;
  ASSERT_EQ(encode_json("d", m, nullptr, big, sizeof(big), &len), Status::kOk);
  char buf[256];
  EXPECT_EQ(encode_json("d", m, nullptr, buf, len + 1, &len), Status::kOk);  // text + NUL
  EXPECT_EQ(encode_json("d", m, nullptr, buf, len, &len), Status::kBufferTooSmall);
}

TEST(Encoder, SensorNames) {
  EXPECT_STREQ(sensor_name(Sensor::kHumidityRatio), "humidity_ratio");
  EXPECT_STREQ(sensor_name(Sensor::kCount), "?");
  EXPECT_STREQ(sensor_senml_unit(Sensor::kLightLux), "lx");
  EXPECT_EQ(sensor_senml_unit(Sensor::kTemp), nullptr);
}


// --- number formatter vs snprintf (the documented precision) ------------------------------

/// True when |v| lies exactly halfway between two 7-significant-digit decimals (there
/// format_number rounds away from zero, glibc's printf to even).
bool is_tie7(float v) {
  char e[32];
  std::snprintf(e, sizeof(e), "%.6e", static_cast<double>(v));
  const int e10 = std::atoi(std::strchr(e, 'e') + 1);
  const double t = std::fabs(static_cast<double>(v)) * std::pow(10.0, 6 - e10);  // exact here
  return t - std::floor(t) == 0.5;
}

/// Checks one value of |v| < 1e7 against printf("%.7g"): same decimal value (or a tie rounded
/// away from zero), plain notation from 1e-5 on, no trailing zeros, within 24 bytes.
void expect_like_printf(float v) {
  char buf[32];
  std::memset(buf, 'x', sizeof(buf));
  const size_t n = format_number(v, buf);
  ASSERT_GT(n, 0u) << v;
  ASSERT_LT(n, 24u) << v;
  buf[n] = '\0';
  char ref[32];
  std::snprintf(ref, sizeof(ref), "%.7g", static_cast<double>(v));
  const double got = std::strtod(buf, nullptr);
  const double want = std::strtod(ref, nullptr);
  if (got != want) {
    ASSERT_TRUE(is_tie7(v)) << "format_number(" << ref << ") = " << buf;
    EXPECT_GT(std::fabs(got), std::fabs(want)) << "ties round away from zero: " << buf;
  }
  if (std::fabs(static_cast<double>(v)) >= 1e-5) {
    EXPECT_EQ(std::strpbrk(buf, "eE"), nullptr) << buf;
  }
  if (std::strchr(buf, '.') != nullptr) {
    EXPECT_NE(buf[n - 1], '0') << buf;
  }
  EXPECT_NE(buf[n - 1], '.') << buf;
}

struct RangeCase {
  const char* sensor;  // docs/CONTRACT.md name
  float lo, hi;        // value range in the sensor's unit (profiles.cpp valid ranges)
};

TEST(Encoder, FormatNumberMatchesPrintf7gOnContractRanges) {
  const RangeCase cases[] = {
      {"temp (NAB)", -50.f, 300.f},      {"temp_c", -40.f, 200.f},
      {"h_rms_g / v_rms_g / peak_abs_g", 0.f, 50.f},
      {"humidity_pct", 0.f, 100.f},      {"light_lux", 0.f, 100000.f},
      {"co2_ppm", 0.f, 40000.f},         {"humidity_ratio", 1e-5f, 0.1f},
      {"small g values", 1e-5f, 1e-2f},  {"fast-path top", 1e6f, 9999999.f},
  };
  uint32_t x = 2463534242u;  // xorshift32: deterministic
  for (const auto& c : cases) {
    SCOPED_TRACE(c.sensor);
    std::vector<float> vals = {c.lo, c.hi, std::nextafter(c.hi, c.lo), std::nextafter(c.lo, c.hi)};
    for (int i = 0; i < 20000; ++i) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      const double u = static_cast<double>(x) / 4294967296.0;
      vals.push_back(static_cast<float>(c.lo + (c.hi - c.lo) * u));                       // uniform
      if (c.lo > 0) vals.push_back(static_cast<float>(c.lo * std::pow(c.hi / c.lo, u)));  // log
    }
    for (const float v : vals) expect_like_printf(v);
  }
}

TEST(Encoder, FormatNumberDecadeEdgesAndTies) {
  // both sides of every power of ten in the fast path, and values that round up a decade
  for (int e = -5; e <= 7; ++e) {
    const float p = static_cast<float>(std::pow(10.0, e));
    for (float v : {std::nextafter(p, 0.f), p, std::nextafter(p, 1e30f)}) {
      if (v >= 1e7f) continue;  // integer notation: table below
      expect_like_printf(v);
      expect_like_printf(-v);
    }
  }
  const NumCase cases[] = {
      {9999999.5f, "10000000"},   // rounds up to 8 digits (integer part of the fast path)
      {1234567.5f, "1234568"},    // exact tie: away from zero
      {1234568.5f, "1234569"},    // exact tie: away from zero (printf: 1234568, to even)
      {-2.5e-5f, "-0.000025"},    // smallest decade of the fast path
      {9.9999996e-5f, "0.0001"},  // rounds up into the next decade
      {0.0009999999f, "0.0009999999"}, {99.999998f, "100"},
      {100000.f, "100000"},       {40000.5f, "40000.5"},
      {12345678.f, "12345678"},   // >= 1e7: the rounded integer
      {5e-6f, "5e-06"},           // < 1e-5: printf exponent notation
  };
  for (const auto& c : cases) {
    char buf[32];
    const size_t n = format_number(c.v, buf);
    EXPECT_EQ(std::string(buf, n), c.want) << c.v;
  }
}

TEST(Encoder, SixDigitDecimalsPrintBackUnchanged) {
  // values as the data files write them: a decimal of <= 6 significant digits, read into a
  // float, prints as the same text (except in [2^-10, 1e-3), where the float's spacing exceeds
  // half a unit of the 7th digit; outside the contract's ranges)
  uint32_t x = 88172645u;
  int checked = 0;
  for (int i = 0; i < 200000; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const uint32_t mant = 1 + x % 999999u;          // 1 .. 999999
    const int dec = static_cast<int>((x >> 20) % 10);  // 0 .. 9 decimals
    char text[40];
    std::snprintf(text, sizeof(text), "%.*f", dec, mant / std::pow(10.0, dec));
    if (std::strchr(text, '.') != nullptr) {  // canonical: no trailing zeros / dot
      size_t k = std::strlen(text);
      while (text[k - 1] == '0') text[--k] = '\0';
      if (text[k - 1] == '.') text[--k] = '\0';
    }
    const float v = std::strtof(text, nullptr);
    if (v < 1e-5f || (v >= 0.0009765625f && v < 1e-3f)) continue;
    char buf[32];
    const size_t n = format_number(v, buf);
    ASSERT_EQ(std::string(buf, n), text);
    ++checked;
  }
  EXPECT_GT(checked, 150000);
}

TEST(Encoder, FormatU64MatchesPrintf) {
  std::vector<uint64_t> vals = {0, 1, 9, 10, 99, 100, 12345, 99999999, 100000000, 100000001,
                                1767225600000ULL, 9999999999999ULL, 10000000000000ULL,
                                9999999999999999ULL, 10000000000000000ULL, UINT64_MAX,
                                UINT64_MAX - 1};
  uint64_t p = 1;
  for (int i = 0; i < 20; ++i, p *= 10) {
    vals.push_back(p - 1);
    vals.push_back(p);
    vals.push_back(p + 1);
    vals.push_back(p * 7 + 3);
  }
  for (const uint64_t v : vals) {
    char buf[32];
    const size_t n = format_u64(v, buf);
    char ref[32];
    std::snprintf(ref, sizeof(ref), "%" PRIu64, v);
    EXPECT_EQ(std::string(buf, n), ref);
  }
}

TEST(Encoder, FastAndCheckedPathsAgreeForEveryTsWidth) {
  // ts of 13 digits (the fast path: 2001..2286) and wider; with 1..6 readings; the unchecked
  // path (large buffer) and the checked one (exact fit) write the same text
  for (int64_t ts : {kMinEpochMs, int64_t{1767225600123}, int64_t{9999999999999},
                     int64_t{10000000000000}, int64_t{123456789012345678}}) {
    for (uint8_t k = 1; k <= kMaxReadings; ++k) {
      Message mm = msg(18446744073709551615ULL, ts, {});
      for (uint8_t i = 0; i < k; ++i) {
        mm.readings[mm.count++] = {-1234.567f / static_cast<float>(i + 1),
                                   static_cast<Sensor>(i + 3)};
      }
      char head[kJsonHeadMax];
      const size_t hl = render_json_head("dev-1", head);
      ASSERT_GT(hl, 0u);
      char drops[128];
      DropCounters d;
      d.invalid = 4000000000u;
      const size_t dl = render_drops_json(d, drops);
      char big[1024];
      size_t len = 0;
      ASSERT_EQ(encode_json_head(head, hl, mm, drops, dl, big, sizeof(big), &len), Status::kOk);
      char ref[1024];
      size_t rlen = 0;
      ASSERT_EQ(encode_json("dev-1", mm, &d, ref, sizeof(ref), &rlen), Status::kOk);
      EXPECT_STREQ(big, ref);
      std::vector<char> exact(len + 1);
      size_t elen = 0;
      ASSERT_EQ(encode_json_head(head, hl, mm, drops, dl, exact.data(), exact.size(), &elen),
                Status::kOk);
      EXPECT_EQ(std::string(exact.data(), elen), std::string(big, len));
      EXPECT_EQ(encode_json_head(head, hl, mm, drops, dl, exact.data(), len, &elen),
                Status::kBufferTooSmall);
      char tsbuf[32];
      std::snprintf(tsbuf, sizeof(tsbuf), ",\"ts\":%" PRId64 ",", ts);
      EXPECT_NE(std::strstr(big, tsbuf), nullptr) << big;
    }
  }
  char head[kJsonHeadMax];
  EXPECT_EQ(render_json_head("bad/id", head), 0u);
}

}  // namespace
}  // namespace fw
