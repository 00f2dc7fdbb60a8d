// Host implementation of SeqStorage: one decimal number in a text file.
#pragma once
#include <string>

#include "../core/seq_counter.h"

namespace fw {

/// Stores the sequence mark in `path` (written to path + ".tmp", fsync'd, then renamed over
/// path, so a crash leaves either the old or the new value). load(): kNotFound if the file
/// does not exist, kStorageError if it cannot be read or parsed.
class FileSeqStorage : public SeqStorage {
 public:
  explicit FileSeqStorage(std::string path) : path_(std::move(path)) {}
  Status load(uint64_t* value) override;
  Status store(uint64_t value) override;

 private:
  std::string path_;
};

}  // namespace fw
