// Test doubles shared by the host tests of the firmware core (fw_tests).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "node.h"

namespace fw {
namespace test_support {

/// In-memory SeqStorage: remembers the last stored value; can be told to fail on load or
/// store (then returns Status::kStorageError); counts successful writes.
class MemStorage : public SeqStorage {
 public:
  Status load(uint64_t* v) override {
    if (fail_load) return Status::kStorageError;
    if (!has) return Status::kNotFound;
    *v = value;
    return Status::kOk;
  }
  Status store(uint64_t v) override {
    if (fail_store) return Status::kStorageError;
    value = v;
    has = true;
    ++writes;
    return Status::kOk;
  }
  bool has = false;
  uint64_t value = 0;
  bool fail_load = false;
  bool fail_store = false;
  int writes = 0;
};

/// A stamped message with sequence number `seq`, event time `ts` (epoch ms) and readings `rs`.
inline Message msg(uint64_t seq, int64_t ts, std::initializer_list<Reading> rs) {
  Message m;
  m.seq = seq;
  m.ts = ts;
  for (const Reading& r : rs) m.readings[m.count++] = r;
  return m;
}

}  // namespace test_support
}  // namespace fw
