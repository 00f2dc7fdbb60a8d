// Store-and-forward outbox: stamped messages wait here until the broker acknowledges them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "message.h"
#include "ring_buffer.h"
#include "status.h"

namespace fw {

/// Bounded FIFO of messages (at most N; when full the oldest is dropped and counted).
/// Flow: push() on every reading; while connected, next_unsent() / mark_sent() up to the
/// in-flight limit, and ack(seq) on PUBACK. Messages leave only when acked, in order, so after a
/// reconnect they are flushed in their original order with their original timestamps.
/// on_disconnect() makes the unacked ones unsent again (at-least-once: a message whose PUBACK
/// was lost is sent twice; downstream de-duplicates by (device_id, seq)); a message already
/// acked out of order (waiting behind an unacked one) is not sent again.
/// Static RAM: N * sizeof(Message) (72 bytes with kMaxReadings = 6).
template <size_t N>
class Outbox {
 public:
  static constexpr uint8_t kSent = 1;
  static constexpr uint8_t kAcked = 2;

  /// Queues m (its flags are cleared). kOk, or kDroppedOldest when the oldest was dropped
  /// (dropped() grows; if it was in flight, its later ack is ignored).
  Status push(const Message& m) {
    const Status st = q_.push(m);
    q_.back().flags = 0;
    if (st == Status::kDroppedOldest && unsent_ > 0) --unsent_;
    return st;
  }
  /// Oldest message not yet sent, or nullptr.
  const Message* next_unsent() const { return unsent_ < q_.size() ? &q_.at(unsent_) : nullptr; }
  /// Marks the message returned by next_unsent() as sent (in flight).
  void mark_sent() {
    if (unsent_ < q_.size()) q_.at(unsent_++).flags |= kSent;
    skip_acked();
  }
  /// PUBACK for seq: marks it acked, then removes acked messages from the front.
  /// kNotFound if seq is not in flight (e.g. already dropped, or already acked).
  Status ack(uint64_t seq) {
    Status st = Status::kNotFound;
    for (size_t i = 0; i < unsent_; ++i) {
      Message& m = q_.at(i);
      if (m.seq == seq && (m.flags & (kSent | kAcked)) == kSent) {
        m.flags |= kAcked;
        st = Status::kOk;
        break;
      }
    }
    while (!q_.empty() && (q_.front().flags & kAcked)) {
      q_.pop(nullptr);
      --unsent_;
    }
    return st;
  }
  /// Connection lost: every unacked message becomes unsent again (resent after reconnect, in
  /// order); acked ones keep their mark and are skipped.
  void on_disconnect() {
    for (size_t i = 0; i < q_.size(); ++i) {
      Message& m = q_.at(i);
      m.flags = (m.flags & kAcked) ? static_cast<uint8_t>(kSent | kAcked) : uint8_t{0};
    }
    unsent_ = 0;
    skip_acked();
  }
  /// Messages sent and still held (unacked, or acked behind an unacked one): the count the
  /// in-flight limit applies to.
  size_t in_flight() const { return unsent_; }
  size_t size() const { return q_.size(); }
  bool empty() const { return q_.empty(); }
  uint32_t dropped() const { return q_.dropped(); }
  static constexpr size_t capacity() { return N; }

 private:
  void skip_acked() {
    while (unsent_ < q_.size() && (q_.at(unsent_).flags & kAcked)) ++unsent_;
  }

  RingBuffer<Message, N, OverflowPolicy::kOverwriteOldest> q_;
  size_t unsent_ = 0;  // q_[0, unsent_) have been sent (some may be acked but not at the front)
};

}  // namespace fw
