// Batches (docs/CONTRACT.md "Batches"): the batch encoder, the outbox's batch send / ack, and
// the node's next_payload() seq accounting, retry after reconnect and outbox bound.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "encoder.h"
#include "node.h"
#include "outbox.h"
#include "profiles.h"
#include "test_support.h"

namespace fw {
namespace {

using test_support::MemStorage;
using test_support::msg;

constexpr int64_t kEpoch = 1767225600000;  // 2026-01-01T00:00:00Z


size_t count_of(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t p = s.find(part); p != std::string::npos; p = s.find(part, p + 1)) ++n;
  return n;
}

// ---- encoder ----

TEST(BatchEncoder, ExactText) {
  const Message a = msg(120, kEpoch, {{0.56f, Sensor::kHRmsG}});
  const Message b = msg(121, kEpoch + 100, {{0.57f, Sensor::kHRmsG}, {25.5f, Sensor::kTempC}});
  const Message* ms[] = {&a, &b};
  DropCounters d;
  d.outbox = 3;
  char buf[512];
  size_t len = 0;
  ASSERT_EQ(encode_json_batch("mill-7", ms, 2, &d, buf, sizeof(buf), &len), Status::kOk);
  const std::string want =
      "{\"device_id\":\"mill-7\",\"seq\":120,\"samples\":["
      "{\"ts\":1767225600000,\"readings\":{\"h_rms_g\":0.56}},"
      "{\"ts\":1767225600100,\"readings\":{\"h_rms_g\":0.57,\"temp_c\":25.5}}],"
      "\"drops\":{\"buffer\":0,\"outbox\":3,\"invalid\":0,\"clock\":0,\"storage\":0}}";
  EXPECT_EQ(std::string(buf, len), want);
  EXPECT_EQ(std::strlen(buf), len);
  // without drops
  ASSERT_EQ(encode_json_batch("mill-7", ms, 1, nullptr, buf, sizeof(buf), &len), Status::kOk);
  EXPECT_EQ(std::string(buf, len),
            "{\"device_id\":\"mill-7\",\"seq\":120,\"samples\":["
            "{\"ts\":1767225600000,\"readings\":{\"h_rms_g\":0.56}}]}");
}

TEST(BatchEncoder, ErrorsTable) {
  const Message ok0 = msg(5, kEpoch, {{1.f, Sensor::kTempC}});
  const Message ok1 = msg(6, kEpoch + 1, {{1.f, Sensor::kTempC}});
  const Message gap = msg(7, kEpoch + 2, {{1.f, Sensor::kTempC}});  // after ok0: seq 6 expected
  const Message unstamped = msg(6, 5000, {{1.f, Sensor::kTempC}});
  const Message empty = msg(6, kEpoch, {});
  const Message nan = msg(6, kEpoch, {{NAN, Sensor::kTempC}});
  struct Case {
    const char* name;
    std::vector<const Message*> ms;
    Status want;
  };
  const Case cases[] = {
      {"no samples", {}, Status::kInvalidArgument},
      {"seq gap", {&ok0, &gap}, Status::kInvalidArgument},
      {"seq out of order", {&ok1, &ok0}, Status::kInvalidArgument},
      {"uptime stamp", {&ok0, &unstamped}, Status::kInvalidArgument},
      {"no readings", {&ok0, &empty}, Status::kInvalidArgument},
      {"NaN reading", {&ok0, &nan}, Status::kNotFinite},
      {"good", {&ok0, &ok1}, Status::kOk},
  };
  for (const auto& c : cases) {
    char buf[256];
    size_t len = 99;
    EXPECT_EQ(encode_json_batch("d", c.ms.data(), c.ms.size(), nullptr, buf, sizeof(buf), &len),
              c.want)
        << c.name;
    if (c.want != Status::kOk) {
      EXPECT_EQ(len, 0u) << c.name;
    }
  }
  char buf[256];
  size_t len = 0;
  const Message* two[] = {&ok0, &ok1};
  EXPECT_EQ(encode_json_batch("bad id!", two, 2, nullptr, buf, sizeof(buf), &len),
            Status::kInvalidArgument);
  // one byte short of the exact fit: kBufferTooSmall; the exact fit works
  ASSERT_EQ(encode_json_batch("d", two, 2, nullptr, buf, sizeof(buf), &len), Status::kOk);
  const size_t exact = len + 1;
  EXPECT_EQ(encode_json_batch("d", two, 2, nullptr, buf, exact, &len), Status::kOk);
  EXPECT_EQ(encode_json_batch("d", two, 2, nullptr, buf, exact - 1, &len),
            Status::kBufferTooSmall);
  EXPECT_EQ(buf[0], '\0');
  EXPECT_EQ(len, 0u);
}

TEST(BatchEncoder, MaxSamplesAndWorstCaseBound) {
  // 101 samples are refused; 100 worst-case samples (64-char id, 6 long readings, 20-digit
  // seq, huge drops) fit json_batch_bound(100)
  static Message ms[kMaxSamplesPerMessage + 1];
  static const Message* ptrs[kMaxSamplesPerMessage + 1];
  const uint64_t base = 9223372036854775807ULL - 200;
  for (size_t i = 0; i <= kMaxSamplesPerMessage; ++i) {
    ms[i] = msg(base + i, 9223372036854775807LL - 1000 + static_cast<int64_t>(i),
                {{-1.234567e-30f, Sensor::kHumidityRatio},
                 {-1.234567e-30f, Sensor::kHumidityPct},
                 {-1.234567e30f, Sensor::kPeakAbsG},
                 {-1.234567e-30f, Sensor::kLightLux},
                 {-1.234567e-30f, Sensor::kTempC},
                 {-1.234567e-30f, Sensor::kCo2Ppm}});
    ptrs[i] = &ms[i];
  }
  const std::string id(64, 'x');
  DropCounters d;
  d.buffer = d.outbox = d.invalid = d.clock = d.storage = 4294967295u;
  static char buf[json_batch_bound(kMaxSamplesPerMessage) + 100];
  size_t len = 0;
  EXPECT_EQ(encode_json_batch(id.c_str(), ptrs, kMaxSamplesPerMessage + 1, &d, buf, sizeof(buf),
                              &len),
            Status::kInvalidArgument);
  ASSERT_EQ(encode_json_batch(id.c_str(), ptrs, kMaxSamplesPerMessage, &d, buf,
                              json_batch_bound(kMaxSamplesPerMessage), &len),
            Status::kOk);
  EXPECT_LT(len, json_batch_bound(kMaxSamplesPerMessage));
  EXPECT_EQ(count_of(std::string(buf, len), "{\"ts\":"), kMaxSamplesPerMessage);
}

// ---- outbox ----

Message one(uint64_t seq) { return msg(seq, kEpoch + static_cast<int64_t>(seq), {{1.f, Sensor::kTempC}}); }

TEST(BatchOutbox, AckOfABatchRemovesItAsAUnit) {
  Outbox<16> ob;
  for (uint64_t s = 0; s < 10; ++s) ob.push(one(s));
  ASSERT_EQ(ob.unsent_run(4), 4u);
  EXPECT_EQ(ob.unsent_at(3).seq, 3u);
  ob.mark_sent(4);  // batch 0..3
  ASSERT_EQ(ob.unsent_run(4), 4u);
  ob.mark_sent(4);  // batch 4..7
  EXPECT_EQ(ob.in_flight(), 8u);
  EXPECT_EQ(ob.unsent(), 2u);
  EXPECT_EQ(ob.unsent_run(4), 2u);  // only 8, 9 left
  // the second batch's PUBACK first: acked but held behind the first
  EXPECT_EQ(ob.ack_batch(4, 4), Status::kOk);
  EXPECT_EQ(ob.size(), 10u);
  EXPECT_EQ(ob.ack_batch(4, 4), Status::kNotFound);  // a repeated PUBACK changes nothing
  EXPECT_EQ(ob.ack_batch(0, 4), Status::kOk);
  EXPECT_EQ(ob.size(), 2u);
  EXPECT_EQ(ob.next_unsent()->seq, 8u);
  EXPECT_EQ(ob.ack_batch(8, 2), Status::kNotFound);  // not sent yet: stays
  EXPECT_EQ(ob.size(), 2u);
  EXPECT_EQ(ob.ack_batch(0, 0), Status::kNotFound);
}

TEST(BatchOutbox, RunStopsAtSeqGapAndAckedMessage) {
  Outbox<16> ob;
  for (uint64_t s : {0u, 1u, 2u, 10u, 11u}) ob.push(one(s));
  EXPECT_EQ(ob.unsent_run(10), 3u);
  ob.mark_sent(3);
  EXPECT_EQ(ob.unsent_run(10), 2u);
  EXPECT_EQ(ob.unsent_at(0).seq, 10u);
}

TEST(BatchOutbox, RetryAfterReconnectKeepsAckedBatches) {
  Outbox<16> ob;
  for (uint64_t s = 0; s < 9; ++s) ob.push(one(s));
  ob.mark_sent(3);  // A = 0..2
  ob.mark_sent(3);  // B = 3..5
  ob.mark_sent(3);  // C = 6..8
  EXPECT_EQ(ob.ack_batch(3, 3), Status::kOk);  // only B's PUBACK arrives
  ob.on_disconnect();
  // after the reconnect A is resent, B skipped (the broker has it), C resent
  ASSERT_EQ(ob.unsent_run(10), 3u);
  EXPECT_EQ(ob.unsent_at(0).seq, 0u);
  ob.mark_sent(3);
  ASSERT_EQ(ob.unsent_run(10), 3u);
  EXPECT_EQ(ob.unsent_at(0).seq, 6u);
  ob.mark_sent(3);
  EXPECT_EQ(ob.unsent_run(10), 0u);
  // the resent batches' PUBACKs (this connection's message ids) empty the outbox
  EXPECT_EQ(ob.ack_batch(6, 3), Status::kOk);
  EXPECT_EQ(ob.ack_batch(0, 3), Status::kOk);
  EXPECT_TRUE(ob.empty());
  EXPECT_EQ(ob.dropped(), 0u);
}

TEST(BatchOutbox, BoundDropsOldestAndPartialAck) {
  Outbox<8> ob;
  for (uint64_t s = 0; s < 4; ++s) ob.push(one(s));
  ob.mark_sent(4);  // batch 0..3 in flight, then the link stalls and 6 more arrive
  for (uint64_t s = 4; s < 10; ++s) ob.push(one(s));
  EXPECT_EQ(ob.size(), 8u);
  EXPECT_EQ(ob.dropped(), 2u);  // seq 0 and 1 lost, counted
  EXPECT_EQ(ob.in_flight(), 2u);
  // the batch's PUBACK covers 0..3: 2 and 3 leave, 0 and 1 were already dropped
  EXPECT_EQ(ob.ack_batch(0, 4), Status::kNotFound);
  EXPECT_EQ(ob.size(), 6u);
  EXPECT_EQ(ob.next_unsent()->seq, 4u);
  EXPECT_EQ(ob.unsent_run(100), 6u);  // never more than the outbox holds
}

// ---- node ----


using BatchNode = Node<32, 4, 4, 16, 6>;

Sample temp_sample(int64_t mono, float v) {
  Sample s;
  s.mono_ms = mono;
  s.count = 1;
  s.readings[0] = Reading{v, Sensor::kTempC};
  return s;
}

BatchNode* make_node(MemStorage* mem, uint8_t k) {
  static BatchNode node;
  node = BatchNode();
  const Profile* p = find_profile("femto-b1_1");
  EXPECT_NE(p, nullptr);
  NodeConfig c;
  c.device_id = "femto-b1_1";
  c.seq_block = 8;
  c.samples_per_message = k;
  EXPECT_EQ(node.init(c, p->channels, p->n_channels, mem), Status::kOk);
  node.set_clock(0, kEpoch);
  return &node;
}

struct Sent {
  uint64_t seq;
  size_t n;
  std::string payload;
};

// Sends every due payload (marks it sent) and returns them.
std::vector<Sent> send_due(BatchNode* node, bool flush) {
  std::vector<Sent> out;
  static char buf[json_batch_bound(kMaxSamplesPerMessage)];
  for (;;) {
    size_t len = 0, n = 0;
    uint64_t seq = 0;
    const Status st = node->next_payload(flush, buf, sizeof(buf), &len, &seq, &n);
    if (st == Status::kEmpty) break;
    EXPECT_EQ(st, Status::kOk);
    node->outbox().mark_sent(n);
    out.push_back({seq, n, std::string(buf, len)});
  }
  return out;
}

TEST(BatchNode, InitRejectsBadSamplesPerMessage) {
  const Profile* p = find_profile("femto-b1_1");
  struct Case {
    const char* name;
    unsigned k;
    PayloadFormat fmt;
    Status want;
  };
  const Case cases[] = {
      {"zero", 0, PayloadFormat::kContractJson, Status::kInvalidArgument},
      {"one", 1, PayloadFormat::kContractJson, Status::kOk},
      {"one, SenML", 1, PayloadFormat::kSenml, Status::kOk},
      {"outbox capacity", 32, PayloadFormat::kContractJson, Status::kOk},
      {"above the outbox capacity", 33, PayloadFormat::kContractJson, Status::kInvalidArgument},
      {"batch in SenML", 2, PayloadFormat::kSenml, Status::kInvalidArgument},
  };
  for (const auto& c : cases) {
    static BatchNode node;
    node = BatchNode();
    MemStorage mem;
    NodeConfig cfg;
    cfg.device_id = "n";
    cfg.samples_per_message = static_cast<uint8_t>(c.k);
    cfg.format = c.fmt;
    EXPECT_EQ(node.init(cfg, p->channels, p->n_channels, &mem), c.want) << c.name;
  }
  static Node<128> big;
  MemStorage mem;
  NodeConfig cfg;
  cfg.device_id = "n";
  cfg.samples_per_message = 101;
  EXPECT_EQ(big.init(cfg, p->channels, p->n_channels, &mem), Status::kInvalidArgument);
  cfg.samples_per_message = 100;
  EXPECT_EQ(big.init(cfg, p->channels, p->n_channels, &mem), Status::kOk);
}

TEST(BatchNode, SeqAccountingAndPartialBatchOnFlush) {
  MemStorage mem;
  mem.has = true;
  mem.value = 1000;  // a persisted mark: this boot starts at 1000
  BatchNode* node = make_node(&mem, 10);
  const uint64_t begin = node->next_seq();
  EXPECT_EQ(begin, 1000u);
  for (int i = 0; i < 25; ++i) ASSERT_EQ(node->record(temp_sample(i * 100, 20.f + static_cast<float>(i))), Status::kOk);
  EXPECT_EQ(node->next_seq(), begin + 25);  // one seq per sample
  const auto sent = send_due(node, false);
  ASSERT_EQ(sent.size(), 2u);  // 5 samples wait for a full batch
  for (size_t b = 0; b < 2; ++b) {
    EXPECT_EQ(sent[b].seq, begin + 10 * b);
    EXPECT_EQ(sent[b].n, 10u);
    const std::string head = "{\"device_id\":\"femto-b1_1\",\"seq\":" +
                             std::to_string(begin + 10 * b) + ",\"samples\":[";
    EXPECT_EQ(sent[b].payload.rfind(head, 0), 0u) << sent[b].payload;
    EXPECT_EQ(count_of(sent[b].payload, "{\"ts\":"), 10u);
    // sample i carries the i-th reading: ts = epoch + 100 * (10 b + i)
    EXPECT_NE(sent[b].payload.find("{\"ts\":" + std::to_string(kEpoch + 1000 * b + 900)),
              std::string::npos);
    EXPECT_EQ(count_of(sent[b].payload, "\"drops\":"), 1u);
  }
  EXPECT_TRUE(send_due(node, false).empty());
  const auto rest = send_due(node, true);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].seq, begin + 20);
  EXPECT_EQ(rest[0].n, 5u);
  EXPECT_EQ(count_of(rest[0].payload, "{\"ts\":"), 5u);
  // the next message starts where the batch ended: seq continuity over batches
  ASSERT_EQ(node->record(temp_sample(2500, 30.f)), Status::kOk);
  const auto next = send_due(node, true);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].seq, begin + 25);
  // persistence: the stored mark is ahead of every seq handed out (a reboot never reuses one)
  EXPECT_GE(mem.value, begin + 26);
  // acks as units empty the outbox
  for (const auto& s : {sent[0], sent[1], rest[0], next[0]}) {
    EXPECT_EQ(node->outbox().ack_batch(s.seq, s.n), Status::kOk);
  }
  EXPECT_TRUE(node->outbox().empty());
}

TEST(BatchNode, OneSamplePerMessageIsTheSingleReadingPayload) {
  MemStorage mem;
  BatchNode* node = make_node(&mem, 1);
  ASSERT_EQ(node->record(temp_sample(0, 21.5f)), Status::kOk);
  const auto sent = send_due(node, false);  // no flush needed
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].n, 1u);
  EXPECT_EQ(sent[0].payload.rfind(
                "{\"device_id\":\"femto-b1_1\",\"seq\":0,\"ts\":1767225600000,"
                "\"readings\":{\"temp_c\":21.5}",
                0),
            0u)
      << sent[0].payload;
}

TEST(BatchNode, RetryAfterReconnectResendsEverySampleOnce) {
  MemStorage mem;
  BatchNode* node = make_node(&mem, 4);
  for (int i = 0; i < 12; ++i) ASSERT_EQ(node->record(temp_sample(i * 100, 20.f)), Status::kOk);
  auto first = send_due(node, false);
  ASSERT_EQ(first.size(), 3u);  // 0..3, 4..7, 8..11
  EXPECT_EQ(node->outbox().ack_batch(first[1].seq, first[1].n), Status::kOk);  // only the middle
  node->outbox().on_disconnect();
  // reconnect: the unacked batches go again with their original seqs and timestamps
  auto again = send_due(node, false);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].seq, 0u);
  EXPECT_EQ(again[0].payload, first[0].payload);
  EXPECT_EQ(again[1].seq, 8u);
  EXPECT_EQ(again[1].n, 4u);
  std::vector<int> times(12, 0);  // how often each seq reached the broker, acked
  for (size_t i = 0; i < first[1].n; ++i) ++times[first[1].seq + i];  // acked before the loss
  for (const auto& s : again) {
    EXPECT_EQ(node->outbox().ack_batch(s.seq, s.n), Status::kOk);
    for (size_t i = 0; i < s.n; ++i) ++times[s.seq + i];
  }
  EXPECT_EQ(times, std::vector<int>(12, 1));
  EXPECT_TRUE(node->outbox().empty());
}

TEST(BatchNode, OutboxBoundWhileOffline) {
  MemStorage mem;
  BatchNode* node = make_node(&mem, 10);  // outbox of 32
  for (int i = 0; i < 40; ++i) node->record(temp_sample(i * 100, 20.f));
  EXPECT_EQ(node->outbox().size(), 32u);
  EXPECT_EQ(node->drops().outbox, 8u);  // the oldest 8 samples dropped and counted
  const auto sent = send_due(node, false);
  ASSERT_EQ(sent.size(), 3u);  // 8..17, 18..27, 28..37; 38, 39 wait
  EXPECT_EQ(sent[0].seq, 8u);
  EXPECT_NE(sent[0].payload.find("\"outbox\":8"), std::string::npos);  // reported in the payload
  EXPECT_EQ(sent[2].seq, 28u);
}

}  // namespace
}  // namespace fw
