// Board implementation of SeqStorage: the sequence mark in NVS (Arduino Preferences).
#pragma once
#include <Preferences.h>

#include "seq_counter.h"

namespace fw {

/// Stores the mark under namespace "fw", key "seq". NVS writes are atomic per key, and
/// SeqCounter writes once per block of numbers to spare flash.
class NvsSeqStorage : public SeqStorage {
 public:
  /// Opens the NVS namespace; false if NVS is not available.
  bool begin() { return prefs_.begin("fw", false); }
  Status load(uint64_t* value) override {
    if (!prefs_.isKey("seq")) return Status::kNotFound;
    *value = prefs_.getULong64("seq", 0);
    return Status::kOk;
  }
  Status store(uint64_t value) override {
    return prefs_.putULong64("seq", value) == sizeof(uint64_t) ? Status::kOk
                                                               : Status::kStorageError;
  }

 private:
  Preferences prefs_;
};

}  // namespace fw
