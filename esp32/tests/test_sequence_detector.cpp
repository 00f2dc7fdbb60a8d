#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "sequence_detector.h"

namespace fw {
namespace {

// An event: spike (temp NaN) or temperature reading.
struct Ev {
  int64_t t;
  bool spike;
  float temp;
};

struct SeqCase {
  const char* name;
  std::vector<Ev> events;
  uint32_t matches;
};

Ev S(int64_t t) { return {t, true, NAN}; }
Ev T(int64_t t, float c) { return {t, false, c}; }

TEST(SequenceDetector, Table) {
  // T = 60000 ms, X = 2.0 degrees C
  const SeqCase cases[] = {
      {"rise at exactly T matches", {T(0, 50), S(1000), T(61000, 52)}, 1},
      {"rise at T + 1 ms does not", {T(0, 50), S(1000), T(61001, 52)}, 0},
      {"rise just short of X", {T(0, 50), S(1000), T(2000, 51.99f)}, 0},
      {"rise of exactly X matches", {T(0, 50), S(1000), T(2000, 52)}, 1},
      {"rise before the spike does not count", {T(0, 50), T(500, 53), S(1000), T(2000, 53)}, 0},
      {"wrong order: rise then spike", {T(0, 50), T(1000, 55), S(2000)}, 0},
      {"no temperature before spike: first after is base",
       {S(0), T(10, 50), T(20, 52)}, 1},
      {"matches once, then needs a new spike",
       {T(0, 50), S(1), T(2, 52), T(3, 54), T(4, 56)}, 1},
      {"new spike re-arms the window",
       {T(0, 50), S(1000), S(50000), T(110000, 52)}, 1},
      {"re-arm keeps the lower base",
       {T(0, 50), S(1000), T(2000, 51), S(3000), T(4000, 52)}, 1},
      {"expired then second spike with new base",
       {T(0, 50), S(0), T(70000, 51), S(70001), T(71000, 52.5f)}, 0},
      {"NaN temperature ignored", {T(0, 50), S(1), T(2, NAN), T(3, 52)}, 1},
  };
  for (const auto& c : cases) {
    SequenceDetector d;
    ASSERT_EQ(d.configure(SequenceConfig{60000, 2.0f}), Status::kOk);
    uint32_t m = 0;
    for (const Ev& e : c.events) {
      if (e.spike) {
        d.on_spike(e.t);
      } else if (d.on_temperature(e.t, e.temp)) {
        ++m;
      }
    }
    EXPECT_EQ(m, c.matches) << c.name;
    EXPECT_EQ(d.matches(), c.matches) << c.name;
  }
}

TEST(SequenceDetector, StatesAndConfig) {
  SequenceDetector d;
  EXPECT_EQ(d.configure(SequenceConfig{-1, 1.f}), Status::kInvalidArgument);
  EXPECT_EQ(d.configure(SequenceConfig{100, 0.f}), Status::kInvalidArgument);
  ASSERT_EQ(d.configure(SequenceConfig{100, 1.f}), Status::kOk);
  EXPECT_EQ(d.state(), SequenceDetector::State::kIdle);
  d.on_spike(0);
  EXPECT_EQ(d.state(), SequenceDetector::State::kArmed);
  d.on_temperature(100, 20.f);  // at T: still armed (sets the base)
  EXPECT_EQ(d.state(), SequenceDetector::State::kArmed);
  d.on_temperature(101, 20.f);  // T + 1: expired
  EXPECT_EQ(d.state(), SequenceDetector::State::kIdle);
}

}  // namespace
}  // namespace fw
