// Proves the hot path does not touch the heap: global operator new/delete are replaced by
// counting versions, and malloc/calloc/realloc are wrapped (-Wl,--wrap) for calls made from
// our objects. After init, a long run of sample -> process -> encode -> send/ack must count 0.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "node.h"
#include "profiles.h"

namespace {
std::atomic<long> g_allocs{0};
std::atomic<bool> g_counting{false};
void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1);
}
}  // namespace

extern "C" {
void* __real_malloc(size_t);
void* __real_calloc(size_t, size_t);
void* __real_realloc(void*, size_t);
}

// Each operator new counts once: it takes memory from __real_malloc, not the wrapped malloc
// (which would count the same allocation again, as it does at -O0).
void* operator new(std::size_t n) {
  note();
  if (void* p = __real_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  note();
  if (void* p = __real_malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  note();
  return __real_malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  note();
  return __real_malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

extern "C" {
void* __wrap_malloc(size_t n) {
  note();
  return __real_malloc(n);
}
void* __wrap_calloc(size_t a, size_t b) {
  note();
  return __real_calloc(a, b);
}
void* __wrap_realloc(void* p, size_t n) {
  note();
  return __real_realloc(p, n);
}
}

namespace fw {
namespace {

class MemStorage : public SeqStorage {
 public:
  Status load(uint64_t*) override { return Status::kNotFound; }
  Status store(uint64_t v) override {
    value = v;
    return Status::kOk;
  }
  uint64_t value = 0;
};

Node<> g_node;  // default configuration, static like on the board
MemStorage g_mem;

TEST(NoAlloc, CountersWork) {
  g_allocs = 0;
  g_counting = true;
  int* volatile p = new int(3);  // volatile: the new/delete pair must not be elided
  void* volatile q = std::malloc(8);
  g_counting = false;
  delete p;
  std::free(q);
  EXPECT_EQ(g_allocs.load(), 2) << "the counting hooks must see new and malloc";
}

TEST(NoAlloc, HotPathAfterInit) {
  const Profile* prof = find_profile("femto-b1_1");
  ASSERT_NE(prof, nullptr);
  NodeConfig cfg;
  cfg.device_id = "femto-b1_1";
  ASSERT_EQ(g_node.init(cfg, prof->channels, prof->n_channels, &g_mem), Status::kOk);
  char buf[512];
  size_t len = 0;

  g_allocs = 0;
  g_counting = true;
  int64_t t = 0;
  for (int i = 0; i < 20000; ++i, t += 100) {
    Sample s;
    s.mono_ms = t;
    if (i % 10 == 0) {
      s.count = 3;
      s.readings[0] = Reading{0.5f + static_cast<float>(i % 7) * 0.01f, Sensor::kHRmsG};
      s.readings[1] = Reading{0.4f, Sensor::kVRmsG};
      s.readings[2] = Reading{i % 3 ? 2.f : NAN, Sensor::kPeakAbsG};
    } else {
      s.count = 1;
      s.readings[0] = Reading{60.f + static_cast<float>(i % 50) * 0.1f, Sensor::kTempC};
    }
    g_node.submit(s);
    if (i == 100) g_node.set_clock(t, 1767225600000);  // held readings released
    g_node.process();
    // simulate the MQTT side: encode, send, ack; every 1000 samples an outage of 300
    const bool connected = (i / 1000) % 2 == 0 || (i % 1000) > 300;
    if (!connected) {
      g_node.outbox().on_disconnect();
      continue;
    }
    while (const Message* m = g_node.outbox().next_unsent()) {
      ASSERT_EQ(g_node.encode(*m, buf, sizeof(buf), &len), Status::kOk);
      const uint64_t seq = m->seq;
      g_node.outbox().mark_sent();
      g_node.outbox().ack(seq);
    }
  }
  g_counting = false;
  EXPECT_EQ(g_allocs.load(), 0) << "heap allocations on the hot path after init";
  EXPECT_GT(g_node.drops().outbox, 0u);  // the outage overflowed the outbox
  EXPECT_GT(g_node.drops().invalid, 0u);
}

Node<> g_batch_node;  // batching: 10 samples per message
MemStorage g_batch_mem;

TEST(NoAlloc, BatchedHotPathAfterInit) {
  const Profile* prof = find_profile("occupancy-office");
  ASSERT_NE(prof, nullptr);
  NodeConfig cfg;
  cfg.device_id = "occupancy-office";
  cfg.samples_per_message = 10;
  ASSERT_EQ(g_batch_node.init(cfg, prof->channels, prof->n_channels, &g_batch_mem), Status::kOk);
  static char buf[json_batch_bound(10)];
  g_batch_node.set_clock(0, 1767225600000);

  g_allocs = 0;
  g_counting = true;
  size_t payloads = 0;
  int64_t t = 0;
  for (int i = 0; i < 20000; ++i, t += 100) {
    Sample s;
    s.mono_ms = t;
    s.count = 2;
    s.readings[0] = Reading{21.f + static_cast<float>(i % 30) * 0.1f, Sensor::kTempC};
    s.readings[1] = Reading{400.f + static_cast<float>(i % 17), Sensor::kCo2Ppm};
    g_batch_node.submit(s);
    g_batch_node.process();
    const bool connected = (i / 1000) % 2 == 0 || (i % 1000) > 300;
    if (!connected) {
      g_batch_node.outbox().on_disconnect();
      continue;
    }
    size_t len = 0, n = 0;
    uint64_t seq = 0;
    while (g_batch_node.next_payload(false, buf, sizeof(buf), &len, &seq, &n) == Status::kOk) {
      g_batch_node.outbox().mark_sent(n);
      g_batch_node.outbox().ack_batch(seq, n);
      ++payloads;
    }
  }
  g_counting = false;
  EXPECT_EQ(g_allocs.load(), 0) << "heap allocations on the batched hot path after init";
  EXPECT_GT(payloads, 1000u);
  EXPECT_GT(g_batch_node.drops().outbox, 0u);
}

}  // namespace
}  // namespace fw

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
