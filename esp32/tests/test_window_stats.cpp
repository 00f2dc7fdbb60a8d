#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "window_stats.h"

namespace fw {
namespace {

// Reference: two-pass statistics over a vector.
WindowStats reference(const std::vector<float>& v) {
  WindowStats s;
  s.count = static_cast<uint32_t>(v.size());
  if (v.empty()) return s;
  double sum = 0, mn = v[0], mx = v[0];
  for (float x : v) {
    sum += x;
    mn = std::min<double>(mn, x);
    mx = std::max<double>(mx, x);
  }
  s.mean = sum / static_cast<double>(v.size());
  double ss = 0;
  for (float x : v) ss += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  s.min = mn;
  s.max = mx;
  return s;
}

void expect_stats(const WindowStats& got, const WindowStats& want, const char* what) {
  ASSERT_EQ(got.count, want.count) << what;
  if (want.count == 0) return;
  EXPECT_NEAR(got.mean, want.mean, 1e-6) << what;
  EXPECT_NEAR(got.stddev, want.stddev, 1e-6) << what;
  EXPECT_DOUBLE_EQ(got.min, want.min) << what;
  EXPECT_DOUBLE_EQ(got.max, want.max) << what;
}

TEST(Welford, AddRemoveMatchesTwoPass) {
  Welford w;
  for (float x : {2.f, 4.f, 4.f, 4.f, 5.f, 5.f, 7.f, 9.f}) w.add(x);
  EXPECT_DOUBLE_EQ(w.mean(), 5.0);
  EXPECT_NEAR(w.variance(), 32.0 / 7.0, 1e-12);
  w.remove(2.f);
  w.remove(4.f);
  EXPECT_NEAR(w.mean(), 34.0 / 6.0, 1e-12);
  w.remove(4.f);
  w.remove(4.f);
  w.remove(5.f);
  w.remove(5.f);
  w.remove(7.f);
  EXPECT_EQ(w.count(), 1u);
  EXPECT_DOUBLE_EQ(w.mean(), 9.0);
  EXPECT_EQ(w.variance(), 0.0);
  w.remove(9.f);
  EXPECT_EQ(w.count(), 0u);
  EXPECT_TRUE(std::isnan(w.mean()));
}

TEST(SlidingWindow, CountBasedMatchesReferenceOnRandomData) {
  SlidingWindow<8> w;  // last 8 samples
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> d(-100.f, 100.f);
  std::vector<float> all;
  for (int i = 0; i < 500; ++i) {
    const float x = d(rng);
    all.push_back(x);
    ASSERT_EQ(w.add(i, x), Status::kOk);
    const size_t lo = all.size() > 8 ? all.size() - 8 : 0;
    expect_stats(w.stats(), reference({all.begin() + static_cast<long>(lo), all.end()}), "step");
  }
}

TEST(SlidingWindow, NaNAndInfAreIgnored) {
  SlidingWindow<4> w;
  const float bad[] = {NAN, INFINITY, -INFINITY};
  EXPECT_EQ(w.add(0, 1.f), Status::kOk);
  for (float b : bad) EXPECT_EQ(w.add(1, b), Status::kNotFinite);
  expect_stats(w.stats(), reference({1.f}), "after bad samples");
}

struct TimeCase {
  const char* name;
  int64_t now;  // ts of the probe sample (value 100)
  std::vector<float> expect;
};

TEST(SlidingWindow, TimeBoundaryTable) {
  // samples at t = 0, 500, 1000 (values 1, 2, 3), then a probe (value 100) at `now`;
  // span 1000 ms: the window is (now - 1000, now]
  const TimeCase cases[] = {
      {"probe at last ts: t=0 exactly span old leaves", 1000, {2, 3, 100}},
      {"t=500 is 999 ms old: stays", 1499, {2, 3, 100}},
      {"t=500 exactly span old: leaves", 1500, {3, 100}},
      {"all but probe expired", 2000, {100}},
      {"far future", 100000, {100}},
  };
  for (const auto& c : cases) {
    SlidingWindow<16> w(1000);
    w.add(0, 1.f);
    w.add(500, 2.f);
    w.add(1000, 3.f);
    w.add(c.now, 100.f);
    expect_stats(w.stats(), reference(c.expect), c.name);
  }
}

TEST(SlidingWindow, TimeWindowAdvanceExpiresAndRejectsOutOfOrder) {
  SlidingWindow<16> w(1000);
  w.add(0, 5.f);
  w.add(500, 7.f);
  EXPECT_EQ(w.add(499, 1.f), Status::kOutOfOrder);
  w.advance(1000);  // 0 is exactly 1000 old -> leaves
  expect_stats(w.stats(), reference({7.f}), "advance 1000");
  w.advance(1499);
  EXPECT_EQ(w.count(), 1u);
  w.advance(1500);
  EXPECT_EQ(w.count(), 0u);
  EXPECT_TRUE(std::isnan(w.min()));
}

TEST(SlidingWindow, TimeWindowOverflowEvictsEarlyAndCounts) {
  SlidingWindow<3> w(10000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(w.add(i, static_cast<float>(i)), Status::kOk);
  EXPECT_EQ(w.add(3, 3.f), Status::kDroppedOldest);
  EXPECT_EQ(w.overflow_evictions(), 1u);
  expect_stats(w.stats(), reference({1.f, 2.f, 3.f}), "after overflow");
}

TEST(SlidingWindow, MinMaxMonotonicDequeAgainstReference) {
  // decreasing then increasing runs stress both deques
  SlidingWindow<5> w(50);
  std::vector<std::pair<int64_t, float>> hist;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> step(1, 20);
  std::uniform_real_distribution<float> d(0.f, 1.f);
  int64_t t = 0;
  for (int i = 0; i < 2000; ++i) {
    t += step(rng);
    const float x = (i / 25) % 2 ? static_cast<float>(i % 25) : static_cast<float>(25 - i % 25);
    const float v = x + d(rng);
    w.add(t, v);
    hist.emplace_back(t, v);
    std::vector<float> live;
    for (const auto& h : hist)
      if (h.first > t - 50) live.push_back(h.second);
    if (live.size() > 5) live.erase(live.begin(), live.end() - 5);
    expect_stats(w.stats(), reference(live), "random walk");
  }
}

struct TumbleCase {
  const char* name;
  std::vector<std::pair<int64_t, float>> samples;
  std::vector<WindowStats> closed;  // count, mean, min, max, stddev, start, end
};

TEST(TumblingWindow, TimeBoundaryTable) {
  const TumbleCase cases[] = {
      {"sample at exact end opens next window",
       {{0, 1}, {999, 3}, {1000, 10}},
       {{2, 2.0, 1, 3, std::sqrt(2.0), 0, 1000}}},
      {"gap skips empty windows",
       {{10, 4}, {5500, 6}, {7000, 1}},
       {{1, 4, 4, 4, 0, 0, 1000}, {1, 6, 6, 6, 0, 5000, 6000}}},
      {"negative time aligns by floor", {{-1, 2}, {0, 5}}, {{1, 2, 2, 2, 0, -1000, 0}}},
  };
  for (const auto& c : cases) {
    TumblingWindow w = TumblingWindow::by_time(1000);
    std::vector<WindowStats> got;
    for (const auto& s : c.samples) {
      WindowStats out;
      if (w.add(s.first, s.second, &out) == Status::kWindowClosed) got.push_back(out);
    }
    ASSERT_EQ(got.size(), c.closed.size()) << c.name;
    for (size_t i = 0; i < got.size(); ++i) {
      expect_stats(got[i], c.closed[i], c.name);
      EXPECT_EQ(got[i].start_ms, c.closed[i].start_ms) << c.name;
      EXPECT_EQ(got[i].end_ms, c.closed[i].end_ms) << c.name;
    }
  }
}

TEST(TumblingWindow, CountWindowAndRejections) {
  TumblingWindow w = TumblingWindow::by_count(3);
  WindowStats out;
  EXPECT_EQ(w.add(0, 1, &out), Status::kOk);
  EXPECT_EQ(w.add(1, NAN, &out), Status::kNotFinite);
  EXPECT_EQ(w.add(2, 2, &out), Status::kOk);
  EXPECT_EQ(w.add(3, 6, &out), Status::kWindowClosed);
  expect_stats(out, reference({1, 2, 6}), "count 3");
  EXPECT_EQ(out.start_ms, 0);
  EXPECT_EQ(out.end_ms, 3);
  TumblingWindow t = TumblingWindow::by_time(1000);
  t.add(5000, 1, &out);
  EXPECT_EQ(t.add(4999, 1, &out), Status::kOutOfOrder);
  TumblingWindow bad = TumblingWindow::by_count(0);
  EXPECT_EQ(bad.add(0, 1, &out), Status::kInvalidArgument);
}

}  // namespace
}  // namespace fw
