#include <gtest/gtest.h>

#include <vector>

#include "event_clock.h"
#include "outbox.h"

namespace fw {
namespace {

Message m(uint64_t seq, int64_t ts) {
  Message x;
  x.seq = seq;
  x.ts = ts;
  x.count = 1;
  x.readings[0] = Reading{1.f, Sensor::kTempC};
  return x;
}

// Sends everything in order with at most `inflight` unacked, acking in order; returns seqs
// and timestamps as the broker would see them.
std::vector<std::pair<uint64_t, int64_t>> flush(Outbox<4>& ob, size_t inflight) {
  std::vector<std::pair<uint64_t, int64_t>> out;
  std::vector<uint64_t> pending;
  while (!ob.empty()) {
    while (ob.in_flight() < inflight && ob.next_unsent() != nullptr) {
      const Message* n = ob.next_unsent();
      out.emplace_back(n->seq, n->ts);
      pending.push_back(n->seq);
      ob.mark_sent();
    }
    EXPECT_EQ(ob.ack(pending.front()), Status::kOk);
    pending.erase(pending.begin());
  }
  return out;
}

struct OverflowCase {
  const char* name;
  int queued;  // seq 0..queued-1, ts = 1000 * seq, capacity 4
  std::vector<uint64_t> flushed;
  uint32_t dropped;
};

TEST(Outbox, OverflowAndFlushOrderTable) {
  const OverflowCase cases[] = {
      {"under capacity", 3, {0, 1, 2}, 0},
      {"exactly full", 4, {0, 1, 2, 3}, 0},
      {"one over: oldest dropped", 5, {1, 2, 3, 4}, 1},
      {"many over", 10, {6, 7, 8, 9}, 6},
  };
  for (const auto& c : cases) {
    for (size_t inflight : {1u, 2u, 20u}) {
      Outbox<4> ob;
      for (int i = 0; i < c.queued; ++i) {
        const Status st = ob.push(m(static_cast<uint64_t>(i), 1000 * i));
        EXPECT_EQ(st, i < 4 ? Status::kOk : Status::kDroppedOldest) << c.name;
      }
      EXPECT_EQ(ob.dropped(), c.dropped) << c.name;
      const auto sent = flush(ob, inflight);
      ASSERT_EQ(sent.size(), c.flushed.size()) << c.name;
      for (size_t i = 0; i < sent.size(); ++i) {
        EXPECT_EQ(sent[i].first, c.flushed[i]) << c.name;
        EXPECT_EQ(sent[i].second, static_cast<int64_t>(1000 * c.flushed[i]))
            << c.name << ": original timestamp kept";
      }
    }
  }
}

TEST(Outbox, DisconnectResendsUnackedInOrder) {
  Outbox<4> ob;
  for (uint64_t i = 0; i < 3; ++i) ob.push(m(i, 0));
  ob.mark_sent();
  ob.mark_sent();
  EXPECT_EQ(ob.in_flight(), 2u);
  ob.on_disconnect();  // PUBACKs lost
  EXPECT_EQ(ob.in_flight(), 0u);
  ASSERT_NE(ob.next_unsent(), nullptr);
  EXPECT_EQ(ob.next_unsent()->seq, 0u);
  EXPECT_EQ(ob.ack(0), Status::kNotFound);  // not in flight any more
  ob.mark_sent();
  EXPECT_EQ(ob.ack(0), Status::kOk);
  EXPECT_EQ(ob.size(), 2u);
}

TEST(Outbox, OutOfOrderAckAndOverflowWhileInFlight) {
  Outbox<4> ob;
  for (uint64_t i = 0; i < 4; ++i) ob.push(m(i, 0));
  for (int i = 0; i < 3; ++i) ob.mark_sent();
  EXPECT_EQ(ob.ack(1), Status::kOk);  // 0 still unacked: nothing leaves yet
  EXPECT_EQ(ob.size(), 4u);
  EXPECT_EQ(ob.ack(0), Status::kOk);  // 0 and 1 leave
  EXPECT_EQ(ob.size(), 2u);
  EXPECT_EQ(ob.in_flight(), 1u);
  ob.push(m(4, 0));
  ob.push(m(5, 0));
  ob.push(m(6, 0));  // drops in-flight seq 2
  EXPECT_EQ(ob.dropped(), 1u);
  EXPECT_EQ(ob.in_flight(), 0u);
  EXPECT_EQ(ob.ack(2), Status::kNotFound);
  EXPECT_EQ(ob.next_unsent()->seq, 3u);
}

TEST(Outbox, DisconnectDoesNotResendMessagesAckedOutOfOrder) {
  Outbox<8> ob;
  for (uint64_t i = 0; i < 5; ++i) ob.push(m(i, 0));
  for (int i = 0; i < 4; ++i) ob.mark_sent();  // 0..3 in flight
  EXPECT_EQ(ob.ack(1), Status::kOk);
  EXPECT_EQ(ob.ack(3), Status::kOk);
  EXPECT_EQ(ob.ack(3), Status::kNotFound);  // duplicate PUBACK
  ob.on_disconnect();                       // PUBACKs of 0 and 2 lost
  std::vector<uint64_t> resent;
  while (const Message* n = ob.next_unsent()) {
    resent.push_back(n->seq);
    ob.mark_sent();
  }
  EXPECT_EQ(resent, (std::vector<uint64_t>{0, 2, 4}));
  for (uint64_t s : {0u, 2u, 4u}) EXPECT_EQ(ob.ack(s), Status::kOk) << s;
  EXPECT_TRUE(ob.empty());
  EXPECT_EQ(ob.in_flight(), 0u);
}

struct ClockCase {
  const char* name;
  std::vector<std::pair<int64_t, int64_t>> sets;  // (mono, epoch)
  int64_t probe_mono;
  int64_t want_epoch;
  uint32_t jumps;
};

TEST(EventClock, SetAndJumpTable) {
  const int64_t E = 1767225600000;  // 2026-01-01
  const ClockCase cases[] = {
      {"single set", {{1000, E}}, 1500, E + 500, 0},
      {"small correction is no jump", {{1000, E}, {2000, E + 1000 + 1000}}, 3000, E + 3000, 0},
      {"forward jump", {{1000, E}, {2000, E + 3600000}}, 2000, E + 3600000, 1},
      {"backward jump", {{1000, E}, {2000, E - 21600000}}, 2500, E - 21600000 + 500, 1},
      {"1970 time ignored", {{0, 5000}, {1000, E}}, 1000, E, 0},
  };
  for (const auto& c : cases) {
    EventClock clk(1000);
    for (const auto& s : c.sets) clk.set(s.first, s.second);
    int64_t got = 0;
    ASSERT_EQ(clk.to_epoch(c.probe_mono, &got), Status::kOk) << c.name;
    EXPECT_EQ(got, c.want_epoch) << c.name;
    EXPECT_EQ(clk.jumps(), c.jumps) << c.name;
  }
  EventClock clk;
  int64_t t;
  EXPECT_EQ(clk.to_epoch(0, &t), Status::kClockNotSet);
  EXPECT_EQ(clk.set(0, 1000), Status::kInvalidArgument);
  EXPECT_FALSE(clk.is_set());
}

}  // namespace
}  // namespace fw
