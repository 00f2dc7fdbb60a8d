// The multi-device virtual node's pure parts: the device list, numbered ids, the pacing
// schedule and the wake queue its event loop runs on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../host/fleet.h"

namespace fw {
namespace {

TEST(DeviceList, ParsesIdsPasswordFilesAndSeqFiles) {
  std::vector<DeviceEntry> d;
  size_t bad = 99;
  ASSERT_EQ(parse_device_list("# fleet\n\nstorm-0000 /a/storm-0000.password /s/0.seq\r\n"
                              "storm-0001\t/a/storm-0001.password\n  storm-0002  \n",
                              &d, &bad),
            Status::kOk);
  EXPECT_EQ(bad, 0u);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].id, "storm-0000");
  EXPECT_EQ(d[0].password_file, "/a/storm-0000.password");
  EXPECT_EQ(d[0].seq_file, "/s/0.seq");
  EXPECT_EQ(d[1].id, "storm-0001");
  EXPECT_EQ(d[1].password_file, "/a/storm-0001.password");
  EXPECT_EQ(d[1].seq_file, "");
  EXPECT_EQ(d[2].id, "storm-0002");
  EXPECT_EQ(d[2].password_file, "");
}

TEST(DeviceList, RejectsBadLinesAndAppendsNothing) {
  struct Case {
    const char* text;
    size_t line;
  } cases[] = {
      {"ok-1\nbad/id\n", 2},             // '/' would change the topic
      {"ok-1\nok-2 p s extra\n", 2},     // four fields
      {"ok-1\n# c\nok-1 p\n", 3},        // the same device twice
      {"ok+1\n", 1},                     // '+' is an MQTT wildcard
  };
  for (const auto& c : cases) {
    std::vector<DeviceEntry> d{DeviceEntry{"keep", "", ""}};
    size_t bad = 0;
    EXPECT_EQ(parse_device_list(c.text, &d, &bad), Status::kInvalidArgument) << c.text;
    EXPECT_EQ(bad, c.line) << c.text;
    EXPECT_EQ(d.size(), 1u) << c.text;
  }
  std::vector<DeviceEntry> d;
  size_t bad = 7;
  EXPECT_EQ(parse_device_list("# only comments\n\n", &d, &bad), Status::kEmpty);
  EXPECT_EQ(bad, 0u);
}

TEST(DeviceList, NumberedIds) {
  std::vector<DeviceEntry> d;
  ASSERT_EQ(numbered_devices("storm", 3, &d), Status::kOk);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].id, "storm-0000");
  EXPECT_EQ(d[2].id, "storm-0002");
  std::vector<DeviceEntry> big;
  ASSERT_EQ(numbered_devices("f", 10001, &big), Status::kOk);
  EXPECT_EQ(big[9999].id, "f-9999");
  EXPECT_EQ(big[10000].id, "f-10000");
  std::vector<DeviceEntry> none;
  EXPECT_EQ(numbered_devices("f", 0, &none), Status::kInvalidArgument);
  EXPECT_EQ(numbered_devices("bad#prefix", 2, &none), Status::kInvalidArgument);
  EXPECT_EQ(numbered_devices(std::string(60, 'x'), 2, &none), Status::kInvalidArgument);  // 65 chars
  EXPECT_TRUE(none.empty());
}

TEST(Pacing, DueTimeIsEventTimeOverSpeedup) {
  EXPECT_EQ(due_after_start_us(0, 10.0), 0);
  EXPECT_EQ(due_after_start_us(1000, 10.0), 100000);        // 1 s of event time at 10x: 0.1 s
  EXPECT_EQ(due_after_start_us(3600000, 3600.0), 1000000);  // 1 h at 3600x: 1 s
  EXPECT_EQ(due_after_start_us(100, 0.5), 200000);
}

TEST(WakeQueue, PopsInTimeOrderAndMovesTimesBothWays) {
  WakeQueue q(5);
  EXPECT_TRUE(q.empty());
  q.set(0, 50);
  q.set(1, 10);
  q.set(2, 30);
  q.set(3, 40);
  q.set(1, 45);  // later
  q.set(3, 5);   // earlier
  q.clear(2);
  q.clear(4);  // never scheduled: no-op
  EXPECT_FALSE(q.scheduled(2));
  EXPECT_TRUE(q.scheduled(1));
  EXPECT_EQ(q.time_of(1), 45);
  std::vector<size_t> order;
  while (!q.empty()) order.push_back(q.pop());
  EXPECT_EQ(order, (std::vector<size_t>{3, 1, 0}));
}

TEST(WakeQueue, MatchesASortAfterRandomUpdates) {
  constexpr size_t kN = 300;
  WakeQueue q(kN);
  std::mt19937 rng(7);
  std::vector<int64_t> want(kN, -1);  // -1: not scheduled
  for (int step = 0; step < 20000; ++step) {
    const size_t i = rng() % kN;
    if (rng() % 5 == 0) {
      q.clear(i);
      want[i] = -1;
    } else {
      const int64_t t = static_cast<int64_t>(rng() % 100000);
      q.set(i, t);
      want[i] = t;
    }
  }
  std::vector<int64_t> expected;
  for (int64_t t : want)
    if (t >= 0) expected.push_back(t);
  std::sort(expected.begin(), expected.end());
  std::vector<int64_t> got;
  while (!q.empty()) {
    got.push_back(q.top_time());
    const size_t i = q.pop();
    EXPECT_EQ(q.time_of(i), got.back());
    EXPECT_FALSE(q.scheduled(i));
  }
  EXPECT_EQ(got, expected);
}

}  // namespace
}  // namespace fw
