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
/// Batches: a sender that packs several samples into one MQTT message takes unsent_run(k)
/// messages (consecutive seqs), marks them with mark_sent(n) and, on the PUBACK of that one
/// message, acks them as a unit with ack_batch(first_seq, n). The rules above hold per
/// message: after a reconnect the unacked ones are sent again (possibly cut into batches at
/// other boundaries; downstream de-duplicates each sample by (device_id, seq)).
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
  /// Marks the next n unsent messages (n <= unsent_run(n)) as sent: one batch in flight.
  void mark_sent(size_t n) {
    for (size_t i = 0; i < n; ++i) mark_sent();
  }
  /// How many messages, at most max, a batch can take from next_unsent() on: unsent, not
  /// acked, with consecutive seqs (next_unsent()->seq + i), as the batch payload requires.
  /// 0 when nothing is unsent.
  size_t unsent_run(size_t max) const {
    size_t n = 0;
    while (n < max && unsent_ + n < q_.size()) {
      const Message& m = q_.at(unsent_ + n);
      if ((m.flags & kAcked) || m.seq != q_.at(unsent_).seq + n) break;
      ++n;
    }
    return n;
  }
  /// Unsent message i of the run starting at next_unsent() (precondition: i < unsent_run(i+1)).
  const Message& unsent_at(size_t i) const { return q_.at(unsent_ + i); }
  /// Messages held and not yet sent (including acked ones waiting to be skipped).
  size_t unsent() const { return q_.size() - unsent_; }

  /// PUBACK for seq: marks it acked, then removes acked messages from the front.
  /// kNotFound if seq is not in flight (e.g. already dropped, or already acked).
  Status ack(uint64_t seq) { return ack_batch(seq, 1); }

  /// PUBACK for the one MQTT message that carried seq first_seq .. first_seq + n - 1: marks
  /// every one of them that is in flight acked, then removes acked messages from the front.
  /// kOk when all n were in flight; kNotFound when fewer were (some dropped by overflow, or
  /// already acked; the others are still acked), or n == 0.
  Status ack_batch(uint64_t first_seq, size_t n) {
    size_t found = 0;
    for (size_t i = 0; i < unsent_ && found < n; ++i) {
      Message& m = q_.at(i);
      if (m.seq >= first_seq && m.seq - first_seq < n && (m.flags & (kSent | kAcked)) == kSent) {
        m.flags |= kAcked;
        ++found;
      }
    }
    while (!q_.empty() && (q_.front().flags & kAcked)) {
      q_.pop(nullptr);
      --unsent_;
    }
    return found == n && n > 0 ? Status::kOk : Status::kNotFound;
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
