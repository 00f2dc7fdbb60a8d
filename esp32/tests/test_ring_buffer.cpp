#include <gtest/gtest.h>

#include <vector>

#include "ring_buffer.h"

namespace fw {
namespace {

struct RingCase {
  const char* name;
  OverflowPolicy policy;
  int pushes;               // push 1..pushes into a capacity-4 buffer
  std::vector<int> expect;  // contents oldest first
  uint32_t dropped;
};

template <OverflowPolicy P>
void run_case(const RingCase& c) {
  RingBuffer<int, 4, P> rb;
  for (int i = 1; i <= c.pushes; ++i) {
    const Status st = rb.push(i);
    if (i <= 4) {
      EXPECT_EQ(st, Status::kOk) << c.name;
    } else {
      EXPECT_EQ(st, P == OverflowPolicy::kRejectNew ? Status::kFull : Status::kDroppedOldest)
          << c.name;
    }
  }
  ASSERT_EQ(rb.size(), c.expect.size()) << c.name;
  for (size_t i = 0; i < c.expect.size(); ++i) EXPECT_EQ(rb.at(i), c.expect[i]) << c.name;
  EXPECT_EQ(rb.dropped(), c.dropped) << c.name;
  std::vector<int> popped;
  int v;
  while (rb.pop(&v) == Status::kOk) popped.push_back(v);
  EXPECT_EQ(popped, c.expect) << c.name;
  EXPECT_EQ(rb.pop(&v), Status::kEmpty) << c.name;
}

TEST(RingBuffer, OverflowTable) {
  const RingCase cases[] = {
      {"empty", OverflowPolicy::kOverwriteOldest, 0, {}, 0},
      {"partial", OverflowPolicy::kOverwriteOldest, 3, {1, 2, 3}, 0},
      {"exactly full", OverflowPolicy::kOverwriteOldest, 4, {1, 2, 3, 4}, 0},
      {"overwrite one", OverflowPolicy::kOverwriteOldest, 5, {2, 3, 4, 5}, 1},
      {"overwrite wraps twice", OverflowPolicy::kOverwriteOldest, 11, {8, 9, 10, 11}, 7},
      {"reject partial", OverflowPolicy::kRejectNew, 2, {1, 2}, 0},
      {"reject one", OverflowPolicy::kRejectNew, 5, {1, 2, 3, 4}, 1},
      {"reject many", OverflowPolicy::kRejectNew, 11, {1, 2, 3, 4}, 7},
  };
  for (const auto& c : cases) {
    if (c.policy == OverflowPolicy::kRejectNew) {
      run_case<OverflowPolicy::kRejectNew>(c);
    } else {
      run_case<OverflowPolicy::kOverwriteOldest>(c);
    }
  }
}

TEST(RingBuffer, WraparoundInterleaved) {
  // push/pop alternately so head walks around the array many times
  RingBuffer<int, 3, OverflowPolicy::kRejectNew> rb;
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 2; ++k) ASSERT_EQ(rb.push(next_in++), Status::kOk);
    int v;
    ASSERT_EQ(rb.pop(&v), Status::kOk);
    EXPECT_EQ(v, next_out++);
    ASSERT_EQ(rb.pop(&v), Status::kOk);
    EXPECT_EQ(v, next_out++);
  }
  EXPECT_TRUE(rb.empty());
  EXPECT_EQ(rb.dropped(), 0u);
}

TEST(RingBuffer, FrontBackPopBack) {
  RingBuffer<int, 3, OverflowPolicy::kOverwriteOldest> rb;
  for (int i = 1; i <= 5; ++i) rb.push(i);  // holds 3,4,5
  EXPECT_EQ(rb.front(), 3);
  EXPECT_EQ(rb.back(), 5);
  int v = 0;
  EXPECT_EQ(rb.pop_back(&v), Status::kOk);
  EXPECT_EQ(v, 5);
  EXPECT_EQ(rb.back(), 4);
  rb.clear();
  EXPECT_EQ(rb.pop_back(&v), Status::kEmpty);
  EXPECT_EQ(rb.dropped(), 2u);  // clear keeps the counter
  rb.reset_dropped();
  EXPECT_EQ(rb.dropped(), 0u);
}

}  // namespace
}  // namespace fw
