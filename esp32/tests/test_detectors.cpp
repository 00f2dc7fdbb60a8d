#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "detectors.h"

namespace fw {
namespace {

struct HystCase {
  const char* name;
  std::vector<float> xs;
  std::vector<Edge> edges;
  bool active_after;
};

TEST(Hysteresis, EdgeTable) {
  // high 10, low 8
  const Edge N = Edge::kNone, R = Edge::kRaised, C = Edge::kCleared;
  const HystCase cases[] = {
      {"below high: nothing", {9.99f}, {N}, false},
      {"exactly high raises", {10.f}, {R}, true},
      {"between keeps alarm", {10.f, 9.f, 8.01f}, {R, N, N}, true},
      {"exactly low clears", {10.f, 8.f}, {R, C}, false},
      {"chatter around high raises once", {10.f, 9.9f, 10.1f, 9.9f, 10.f}, {R, N, N, N, N}, true},
      {"between while idle stays idle", {9.f, 8.5f}, {N, N}, false},
      {"NaN changes nothing", {10.f, NAN, 7.f}, {R, N, C}, false},
      {"re-raise after clear", {11.f, 7.f, 12.f}, {R, C, R}, true},
  };
  for (const auto& c : cases) {
    Hysteresis h;
    ASSERT_EQ(h.configure(10.f, 8.f), Status::kOk);
    for (size_t i = 0; i < c.xs.size(); ++i) {
      Edge e;
      const Status st = h.update(c.xs[i], &e);
      EXPECT_EQ(st, std::isfinite(c.xs[i]) ? Status::kOk : Status::kNotFinite) << c.name;
      EXPECT_EQ(e, c.edges[i]) << c.name << " step " << i;
    }
    EXPECT_EQ(h.active(), c.active_after) << c.name;
  }
}

TEST(Hysteresis, RejectsBadConfig) {
  Hysteresis h;
  EXPECT_EQ(h.configure(8.f, 8.f), Status::kInvalidArgument);
  EXPECT_EQ(h.configure(8.f, 9.f), Status::kInvalidArgument);
  EXPECT_EQ(h.configure(NAN, 1.f), Status::kInvalidArgument);
  Edge e;
  EXPECT_EQ(h.update(100.f, &e), Status::kOk);
  EXPECT_EQ(e, Edge::kNone);  // disabled
}

TEST(EwmaZScore, WarmupGivesNoVerdict) {
  EwmaZScore z;
  EwmaConfig c;
  c.warmup = 5;
  ASSERT_EQ(z.configure(c), Status::kOk);
  ZResult r;
  // even a wild value during warm-up is not judged
  const float xs[] = {10.f, 11.f, 9.f, 1000.f, 10.f};
  for (float x : xs) {
    EXPECT_EQ(z.update(x, &r), Status::kWarmingUp);
    EXPECT_FALSE(r.anomalous);
  }
  EXPECT_TRUE(z.warmed_up());
  EXPECT_EQ(z.update(10.f, &r), Status::kOk);
}

struct ZCase {
  const char* name;
  float x;
  bool anomalous;
};

TEST(EwmaZScore, VerdictTableAfterWarmup) {
  // baseline seeded with alternating 9 / 11: mean 10, sample sd = sqrt(40/39)
  EwmaConfig c;
  c.warmup = 40;
  c.k_sigma = 3.0;
  const double sd = std::sqrt(40.0 / 39.0);
  const ZCase cases[] = {
      {"at mean", 10.f, false},
      {"2.9 sigma", static_cast<float>(10 + 2.9 * sd), false},
      {"3.01 sigma", static_cast<float>(10 + 3.01 * sd), true},
      {"-3.01 sigma", static_cast<float>(10 - 3.01 * sd), true},
      {"huge", 1e6f, true},
  };
  for (const auto& tc : cases) {
    EwmaZScore z;
    ASSERT_EQ(z.configure(c), Status::kOk);
    ZResult r;
    for (int i = 0; i < 40; ++i) z.update(i % 2 ? 9.f : 11.f, &r);
    ASSERT_EQ(z.update(tc.x, &r), Status::kOk) << tc.name;
    EXPECT_EQ(r.anomalous, tc.anomalous) << tc.name << " z=" << r.z;
    EXPECT_NEAR(r.mean, 10.0, 1e-9) << tc.name;
    EXPECT_NEAR(r.sigma, sd, 1e-9) << tc.name;
  }
}

TEST(EwmaZScore, AnomaliesDoNotTeachTheBaseline) {
  EwmaConfig c;
  c.warmup = 10;
  c.lambda = 0.5;
  EwmaZScore z;
  ASSERT_EQ(z.configure(c), Status::kOk);
  ZResult r;
  for (int i = 0; i < 10; ++i) z.update(i % 2 ? 9.f : 11.f, &r);
  const double mean0 = z.mean(), sigma0 = z.sigma();
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(z.update(100.f, &r), Status::kOk);
    EXPECT_TRUE(r.anomalous);
  }
  EXPECT_DOUBLE_EQ(z.mean(), mean0);
  EXPECT_DOUBLE_EQ(z.sigma(), sigma0);
  // a normal sample does update it: mean += lambda * (x - mean)
  ASSERT_EQ(z.update(10.5f, &r), Status::kOk);
  EXPECT_FALSE(r.anomalous);
  EXPECT_NEAR(z.mean(), mean0 + 0.5 * (10.5 - mean0), 1e-12);
}

TEST(EwmaZScore, FlatSignalUsesSigmaFloorAndNaNIsIgnored) {
  EwmaConfig c;
  c.warmup = 3;
  c.min_sigma = 0.5;
  EwmaZScore z;
  ASSERT_EQ(z.configure(c), Status::kOk);
  ZResult r;
  for (int i = 0; i < 3; ++i) z.update(20.f, &r);
  EXPECT_EQ(z.update(NAN, &r), Status::kNotFinite);
  ASSERT_EQ(z.update(21.f, &r), Status::kOk);
  EXPECT_DOUBLE_EQ(r.sigma, 0.5);
  EXPECT_DOUBLE_EQ(r.z, 2.0);
  EXPECT_FALSE(r.anomalous);
}

TEST(EwmaZScore, RejectsBadConfig) {
  EwmaZScore z;
  EwmaConfig c;
  c.lambda = 0;
  EXPECT_EQ(z.configure(c), Status::kInvalidArgument);
  c.lambda = 1.5;
  EXPECT_EQ(z.configure(c), Status::kInvalidArgument);
  c.lambda = 0.1;
  c.min_sigma = 0;
  EXPECT_EQ(z.configure(c), Status::kInvalidArgument);
}

}  // namespace
}  // namespace fw
