#include "seq_counter.h"

namespace fw {

Status SeqCounter::init(SeqStorage* storage, uint32_t block) {
  storage_ = nullptr;
  if (storage == nullptr || block == 0) return Status::kInvalidArgument;
  uint64_t mark = 0;
  const Status st = storage->load(&mark);
  if (st == Status::kNotFound) {
    mark = 0;
  } else if (st != Status::kOk) {
    return Status::kStorageError;
  }
  storage_ = storage;
  block_ = block;
  next_ = mark;
  reserved_ = mark;
  return Status::kOk;
}

Status SeqCounter::reserve() {
  const uint64_t mark = next_ + block_;
  if (storage_->store(mark) != Status::kOk) return Status::kStorageError;
  reserved_ = mark;
  return Status::kOk;
}

}  // namespace fw
