// Hot-path bench of the ESP32 firmware core (not a test): per sample
//   submit -> process (validate, sliding window, EWMA z-score, hysteresis, sequence detector,
//   seq, stamp, outbox) -> encode (contract JSON) -> mark sent -> ack.
// usage: bench_hot_path PROFILE N   (PROFILE: temp1 | femto-vib3 | occupancy5)
// Everything N-independent (init, a 1024-sample input table) happens before the loop, so
// run.sh can subtract a run with N = 0 and divide by N.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "node.h"
#include "profiles.h"

namespace {
long g_allocs = 0;
bool g_counting = false;
}  // namespace
void* operator new(std::size_t n) {
  if (g_counting) ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
extern "C" {
void* __real_malloc(size_t);
void* __wrap_malloc(size_t n) {
  if (g_counting) ++g_allocs;
  return __real_malloc(n);
}
}

namespace {

class MemStorage : public fw::SeqStorage {
 public:
  fw::Status load(uint64_t*) override { return fw::Status::kNotFound; }
  fw::Status store(uint64_t v) override {
    value = v;
    return fw::Status::kOk;
  }
  uint64_t value = 0;
};

fw::Node<> g_node;  // default configuration
MemStorage g_mem;
fw::Sample g_table[1024];
char g_buf[1024];

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s temp1|femto-vib3|occupancy5 N\n", argv[0]);
    return 2;
  }
  const char* mode = argv[1];
  const long n = std::atol(argv[2]);
  const char* profile = std::strcmp(mode, "occupancy5") == 0 ? "occupancy-office" : "femto-b1_1";
  const fw::Profile* prof = fw::find_profile(profile);
  fw::NodeConfig cfg;
  cfg.device_id = profile;
  if (g_node.init(cfg, prof->channels, prof->n_channels, &g_mem) != fw::Status::kOk) return 1;
  g_node.set_clock(0, 1767225600000);
  uint32_t x = 12345;
  for (int i = 0; i < 1024; ++i) {  // pseudo-random but realistic values
    x = x * 1664525u + 1013904223u;
    const float r = static_cast<float>(x >> 8) / 16777216.0f;  // [0, 1)
    fw::Sample& s = g_table[i];
    s.count = 0;
    if (std::strcmp(mode, "temp1") == 0) {
      s.readings[s.count++] = {60.0f + r, fw::Sensor::kTempC};
    } else if (std::strcmp(mode, "femto-vib3") == 0) {
      s.readings[s.count++] = {0.5f + 0.05f * r, fw::Sensor::kHRmsG};
      s.readings[s.count++] = {0.4f + 0.05f * r, fw::Sensor::kVRmsG};
      s.readings[s.count++] = {2.0f + r, fw::Sensor::kPeakAbsG};
    } else {
      s.readings[s.count++] = {21.0f + r, fw::Sensor::kTempC};
      s.readings[s.count++] = {30.0f + 5 * r, fw::Sensor::kHumidityPct};
      s.readings[s.count++] = {400.0f + 50 * r, fw::Sensor::kLightLux};
      s.readings[s.count++] = {700.0f + 30 * r, fw::Sensor::kCo2Ppm};
      s.readings[s.count++] = {0.0048f + 0.0001f * r, fw::Sensor::kHumidityRatio};
    }
  }
  size_t bytes = 0;
  g_counting = true;
  for (long i = 0; i < n; ++i) {
    fw::Sample& s = g_table[i & 1023];
    s.mono_ms = i * 1000;  // 1 Hz
    g_node.submit(s);
    g_node.process();
    const fw::Message* m = g_node.outbox().next_unsent();
    size_t len = 0;
    g_node.encode(*m, g_buf, sizeof(g_buf), &len);
    bytes += len;
    const uint64_t seq = m->seq;
    g_node.outbox().mark_sent();
    g_node.outbox().ack(seq);
  }
  g_counting = false;
  std::printf("mode=%s n=%ld payload_bytes_total=%zu heap_allocs_after_init=%ld sizeof_node=%zu\n",
              mode, n, bytes, g_allocs, sizeof(g_node));
  return 0;
}
