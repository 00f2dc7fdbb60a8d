#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "node.h"
#include "profiles.h"
#include "test_support.h"

namespace fw {
namespace {

using test_support::MemStorage;


using SmallNode = Node<4, 2, 2, 16, 6>;
constexpr int64_t kEpoch = 1767225600000;

Sample sample(int64_t mono, std::initializer_list<Reading> rs) {
  Sample s;
  s.mono_ms = mono;
  for (const Reading& r : rs) s.readings[s.count++] = r;
  return s;
}

NodeConfig femto_cfg() {
  NodeConfig c;
  c.device_id = "femto-b1_1";
  c.seq_block = 1;
  return c;
}

SmallNode* make_femto(MemStorage* mem) {
  static SmallNode node;
  node = SmallNode();
  const Profile* p = find_profile("femto-b1_1");
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(node.init(femto_cfg(), p->channels, p->n_channels, mem), Status::kOk);
  return &node;
}

struct ValidCase {
  const char* name;
  std::vector<Reading> in;
  Status want;
  uint8_t kept;
  uint32_t invalid;
};

TEST(Node, NaNAndOutOfRangeTable) {
  const ValidCase cases[] = {
      {"all good", {{0.5f, Sensor::kHRmsG}, {0.4f, Sensor::kVRmsG}}, Status::kOk, 2, 0},
      {"NaN dropped, rest kept", {{NAN, Sensor::kHRmsG}, {0.4f, Sensor::kVRmsG}}, Status::kOk, 1, 1},
      {"only NaN", {{NAN, Sensor::kHRmsG}}, Status::kNotFinite, 0, 1},
      {"inf", {{INFINITY, Sensor::kTempC}}, Status::kNotFinite, 0, 1},
      {"below range", {{-0.1f, Sensor::kHRmsG}}, Status::kOutOfRange, 0, 1},
      {"above range", {{50.01f, Sensor::kPeakAbsG}}, Status::kOutOfRange, 0, 1},
      {"range edges are valid", {{0.f, Sensor::kHRmsG}, {50.f, Sensor::kPeakAbsG}}, Status::kOk, 2, 0},
      {"sensor not in profile", {{400.f, Sensor::kCo2Ppm}}, Status::kInvalidArgument, 0, 1},
  };
  for (const auto& c : cases) {
    MemStorage mem;
    SmallNode* n = make_femto(&mem);
    ASSERT_EQ(n->set_clock(0, kEpoch), Status::kOk);
    Sample s;
    for (const Reading& r : c.in) s.readings[s.count++] = r;
    EXPECT_EQ(n->record(s), c.want) << c.name;
    EXPECT_EQ(n->drops().invalid, c.invalid) << c.name;
    if (c.kept == 0) {
      EXPECT_TRUE(n->outbox().empty()) << c.name;
    } else {
      ASSERT_EQ(n->outbox().size(), 1u) << c.name;
      EXPECT_EQ(n->outbox().next_unsent()->count, c.kept) << c.name;
    }
  }
}

TEST(Node, HoldsReadingsUntilClockSetThenStampsInOrder) {
  MemStorage mem;
  SmallNode* n = make_femto(&mem);
  EXPECT_EQ(n->record(sample(100, {{50.f, Sensor::kTempC}})), Status::kHeld);
  EXPECT_EQ(n->record(sample(200, {{51.f, Sensor::kTempC}})), Status::kHeld);
  EXPECT_EQ(n->record(sample(300, {{52.f, Sensor::kTempC}})), Status::kHeld);  // held cap 2
  EXPECT_TRUE(n->outbox().empty());
  EXPECT_EQ(n->drops().clock, 1u);
  EXPECT_EQ(n->set_clock(1000, 5000), Status::kInvalidArgument);  // 1970: still not set
  EXPECT_EQ(n->held(), 2u);
  ASSERT_EQ(n->set_clock(1000, kEpoch), Status::kOk);
  EXPECT_EQ(n->held(), 0u);
  ASSERT_EQ(n->outbox().size(), 2u);
  const Message* a = n->outbox().next_unsent();
  EXPECT_EQ(a->seq, 1u);
  EXPECT_EQ(a->ts, kEpoch - 800);  // uptime 200, clock set at uptime 1000
  n->outbox().mark_sent();
  const Message* b = n->outbox().next_unsent();
  EXPECT_EQ(b->seq, 2u);
  EXPECT_EQ(b->ts, kEpoch - 700);
  char buf[512];
  size_t len;
  ASSERT_EQ(n->encode(*b, buf, sizeof(buf), &len), Status::kOk);
  EXPECT_NE(std::strstr(buf, "\"clock\":1"), nullptr) << buf;
}

TEST(Node, ClockJumpStampsFromNewOffsetKeepsOldStamps) {
  MemStorage mem;
  SmallNode* n = make_femto(&mem);
  ASSERT_EQ(n->set_clock(0, kEpoch), Status::kOk);
  n->record(sample(1000, {{50.f, Sensor::kTempC}}));
  ASSERT_EQ(n->set_clock(2000, kEpoch - 6 * 3600 * 1000 + 2000), Status::kOk);  // 6 h back
  n->record(sample(3000, {{50.f, Sensor::kTempC}}));
  EXPECT_EQ(n->clock().jumps(), 1u);
  const Message* a = n->outbox().next_unsent();
  EXPECT_EQ(a->ts, kEpoch + 1000);
  n->outbox().mark_sent();
  EXPECT_EQ(n->outbox().next_unsent()->ts, kEpoch - 6 * 3600 * 1000 + 3000);
  EXPECT_GT(n->outbox().next_unsent()->seq, a->seq);  // seq still increases
}

TEST(Node, SampleBufferAndOutboxDropsReachNextPayload) {
  MemStorage mem;
  SmallNode* n = make_femto(&mem);
  n->set_clock(0, kEpoch);
  EXPECT_EQ(n->submit(sample(1, {{50.f, Sensor::kTempC}})), Status::kOk);
  EXPECT_EQ(n->submit(sample(2, {{50.f, Sensor::kTempC}})), Status::kOk);
  EXPECT_EQ(n->submit(sample(3, {{50.f, Sensor::kTempC}})), Status::kFull);  // cap 2
  EXPECT_EQ(n->process(), 2u);
  for (int i = 4; i < 8; ++i) n->record(sample(i, {{50.f, Sensor::kTempC}}));  // outbox cap 4
  EXPECT_EQ(n->drops().buffer, 1u);
  EXPECT_EQ(n->drops().outbox, 2u);
  char buf[512];
  size_t len;
  ASSERT_EQ(n->encode(*n->outbox().next_unsent(), buf, sizeof(buf), &len), Status::kOk);
  EXPECT_NE(std::strstr(buf, "\"drops\":{\"buffer\":1,\"outbox\":2,"), nullptr) << buf;
}

TEST(Node, TakeSampleReturnsQueuedSamplesOldestFirst) {
  MemStorage mem;
  SmallNode* n = make_femto(&mem);
  Sample out;
  EXPECT_EQ(n->take_sample(&out), Status::kEmpty);
  ASSERT_EQ(n->submit(sample(1, {{50.f, Sensor::kTempC}})), Status::kOk);
  ASSERT_EQ(n->submit(sample(2, {{51.f, Sensor::kTempC}})), Status::kOk);
  ASSERT_EQ(n->take_sample(&out), Status::kOk);
  EXPECT_EQ(out.mono_ms, 1);
  ASSERT_EQ(n->take_sample(&out), Status::kOk);
  EXPECT_EQ(out.mono_ms, 2);
  EXPECT_EQ(n->take_sample(&out), Status::kEmpty);
  EXPECT_EQ(n->process(), 0u);  // nothing left for process()
}

TEST(Node, SeqSurvivesRebootAndStorageFailureCounts) {
  MemStorage mem;
  {
    SmallNode* n = make_femto(&mem);
    n->set_clock(0, kEpoch);
    n->record(sample(1, {{50.f, Sensor::kTempC}}));
    n->record(sample(2, {{50.f, Sensor::kTempC}}));
  }
  SmallNode* n = make_femto(&mem);  // reboot
  n->set_clock(0, kEpoch);
  n->record(sample(1, {{50.f, Sensor::kTempC}}));
  EXPECT_EQ(n->outbox().next_unsent()->seq, 2u);
  mem.fail_store = true;
  EXPECT_EQ(n->record(sample(2, {{50.f, Sensor::kTempC}})), Status::kStorageError);
  EXPECT_EQ(n->drops().storage, 1u);
}

TEST(Node, LocalSequenceAlarmFromVibrationSpikeThenTemperatureRise) {
  MemStorage mem;
  SmallNode* n = make_femto(&mem);
  n->set_clock(0, kEpoch);
  int64_t t = 0;
  for (int i = 0; i < 40; ++i, t += 1000) {  // warm the vibration baseline (~0.5 g)
    n->record(sample(t, {{i % 2 ? 0.49f : 0.51f, Sensor::kHRmsG}}));
    n->record(sample(t, {{60.f, Sensor::kTempC}}));
  }
  n->record(sample(t, {{1.5f, Sensor::kHRmsG}}));  // 3x baseline: spike
  EXPECT_EQ(n->events().spikes, 1u);
  EXPECT_EQ(n->events().z_anomalies, 1u);
  n->record(sample(t + 30000, {{60.5f, Sensor::kTempC}}));
  EXPECT_EQ(n->events().sequence_matches, 0u);
  n->record(sample(t + 60000, {{61.f, Sensor::kTempC}}));  // +1 C at exactly 60 s
  EXPECT_EQ(n->events().sequence_matches, 1u);
  n->record(sample(t + 61000, {{101.f, Sensor::kTempC}}));  // hysteresis alarm 100 / 95
  EXPECT_TRUE(n->alarm_active());
  n->record(sample(t + 62000, {{95.f, Sensor::kTempC}}));
  EXPECT_FALSE(n->alarm_active());
  EXPECT_EQ(n->events().threshold_raised, 1u);
  EXPECT_EQ(n->events().threshold_cleared, 1u);
  const auto* w = n->window(Sensor::kTempC);
  ASSERT_NE(w, nullptr);
  EXPECT_GT(w->count(), 0u);
  EXPECT_EQ(n->window(Sensor::kCo2Ppm), nullptr);
}

TEST(Node, InitRejectsBadConfig) {
  MemStorage mem;
  SmallNode n;
  ChannelConfig dup[2];
  NodeConfig c = femto_cfg();
  EXPECT_EQ(n.init(c, dup, 2, &mem), Status::kInvalidArgument);  // same sensor twice
  c.device_id = "bad id";
  EXPECT_EQ(n.init(c, dup, 1, &mem), Status::kInvalidArgument);
  c = femto_cfg();
  ChannelConfig bad_alarm;
  bad_alarm.alarm_high = 1.f;
  bad_alarm.alarm_low = 2.f;
  EXPECT_EQ(n.init(c, &bad_alarm, 1, &mem), Status::kInvalidArgument);
  ChannelConfig seven[7];
  EXPECT_EQ(n.init(c, seven, 7, &mem), Status::kInvalidArgument);
  size_t np;
  const Profile* ps = profiles(&np);
  for (size_t i = 0; i < np; ++i) {
    NodeConfig pc;
    pc.device_id = ps[i].name;
    EXPECT_EQ(n.init(pc, ps[i].channels, ps[i].n_channels, &mem), Status::kOk) << ps[i].name;
  }
  EXPECT_EQ(find_profile("nope"), nullptr);
}

}  // namespace
}  // namespace fw
