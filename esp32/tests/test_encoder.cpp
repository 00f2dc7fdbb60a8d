#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "encoder.h"

namespace fw {
namespace {

Message msg(uint64_t seq, int64_t ts, std::initializer_list<Reading> rs) {
  Message m;
  m.seq = seq;
  m.ts = ts;
  for (const Reading& r : rs) m.readings[m.count++] = r;
  return m;
}

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

}  // namespace
}  // namespace fw
