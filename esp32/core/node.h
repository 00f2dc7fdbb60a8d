// The firmware pipeline shared by the board and the virtual node:
//   sample -> validate -> window update -> detectors -> seq -> stamp (or hold) -> outbox
// and, at send time, encode. Everything is a member array: construct one Node statically,
// init() it once, and nothing on these paths touches the heap.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "detectors.h"
#include "encoder.h"
#include "event_clock.h"
#include "message.h"
#include "outbox.h"
#include "ring_buffer.h"
#include "seq_counter.h"
#include "sequence_detector.h"
#include "status.h"
#include "window_stats.h"

namespace fw {

/// One sampled set of readings, stamped with device uptime (ms, monotonic).
struct Sample {
  int64_t mono_ms = 0;
  uint8_t count = 0;
  Reading readings[kMaxReadings] = {};
};

/// Per-sensor settings. Units are the sensor's (see Sensor).
struct ChannelConfig {
  Sensor sensor = Sensor::kTempC;
  float min_valid = -1e9f;  ///< readings below are rejected (counted in drops.invalid)
  float max_valid = 1e9f;   ///< readings above are rejected
  float alarm_high = NAN;   ///< hysteresis alarm raised at >= alarm_high (NaN: no alarm)
  float alarm_low = NAN;    ///< ... and cleared at <= alarm_low (must be < alarm_high)
  EwmaConfig ewma;          ///< z-score detector settings
};

/// Node-wide settings.
struct NodeConfig {
  const char* device_id = "node";  ///< [A-Za-z0-9_.-]{1,64}; must outlive the Node
  int64_t window_span_ms = 60000;  ///< sliding statistics window per channel, ms
  uint32_t seq_block = 64;         ///< SeqCounter reservation block
  PayloadFormat format = PayloadFormat::kContractJson;
  /// Samples per MQTT message: 1 sends one reading per message (the single-reading payload);
  /// 2..kMaxSamplesPerMessage (and at most the outbox capacity) sends batches (docs/CONTRACT.md
  /// "Batches", contract JSON only): next_payload() waits until that many samples are unsent,
  /// so a device sampling at 10 Hz with 10 samples per message publishes once a second.
  uint8_t samples_per_message = 1;
  /// Sequence detector: a reading of spike_sensor >= spike_ratio * its EWMA baseline mean is a
  /// spike; then a rise of rise_sensor by sequence.min_rise within sequence.window_ms matches.
  /// The ratio mirrors the bearing rule's "multiple of the machine's baseline"; 2.0 is a placeholder
  /// until calibrated on FEMTO data.
  Sensor spike_sensor = Sensor::kHRmsG;
  float spike_ratio = 2.0f;
  Sensor rise_sensor = Sensor::kTempC;
  SequenceConfig sequence;
  int64_t clock_jump_threshold_ms = 1000;
};

/// Local detections since boot (the payload contract carries readings only; the board can
/// drive an LED / buzzer from these while offline).
struct NodeEvents {
  uint32_t threshold_raised = 0;
  uint32_t threshold_cleared = 0;
  uint32_t z_anomalies = 0;
  uint32_t spikes = 0;
  uint32_t sequence_matches = 0;
};

/// Default capacities (see README "Static RAM"): outbox 128 messages (~2 min at 1 msg/s),
/// 32 held before the first SNTP sync, 16 samples between timer and loop, 64 samples per
/// window (60 s at 1 Hz), 6 channels.
template <size_t kOutboxCap = 128, size_t kHeldCap = 32, size_t kSampleCap = 16,
          size_t kWindowCap = 64, size_t kChannels = 6>
class Node {
 public:
  /// Validates the configuration and loads the sequence mark. channels[0..n) must name
  /// distinct sensors, n <= kChannels. Errors: kInvalidArgument (bad id, too many / duplicate
  /// channels, bad detector settings), kStorageError (sequence mark unreadable).
  Status init(const NodeConfig& cfg, const ChannelConfig* channels, size_t n, SeqStorage* storage) {
    if (!valid_device_id(cfg.device_id) || n > kChannels || cfg.window_span_ms <= 0 ||
        cfg.spike_ratio <= 0.0f || cfg.samples_per_message < 1 ||
        cfg.samples_per_message > kMaxSamplesPerMessage ||
        cfg.samples_per_message > kOutboxCap ||
        (cfg.samples_per_message > 1 && cfg.format != PayloadFormat::kContractJson)) {
      return Status::kInvalidArgument;
    }
    cfg_ = cfg;
    head_len_ = render_json_head(cfg.device_id, json_head_);
    drops_len_ = 0;
    clock_ = EventClock(cfg.clock_jump_threshold_ms);
    for (auto& s : slot_) s = kNone;
    for (size_t i = 0; i < n; ++i) {
      const auto si = static_cast<size_t>(channels[i].sensor);
      if (si >= kSensorCount || slot_[si] != kNone) return Status::kInvalidArgument;
      Channel& c = ch_[i];
      c.cfg = channels[i];
      c.window = SlidingWindow<kWindowCap>(cfg.window_span_ms);
      if (c.z.configure(channels[i].ewma) != Status::kOk) return Status::kInvalidArgument;
      if (std::isnan(channels[i].alarm_high)) {
        c.hyst = Hysteresis();
      } else if (c.hyst.configure(channels[i].alarm_high, channels[i].alarm_low) != Status::kOk) {
        return Status::kInvalidArgument;
      }
      slot_[si] = static_cast<uint8_t>(i);
    }
    n_ch_ = n;
    if (seq_detector_.configure(cfg.sequence) != Status::kOk) return Status::kInvalidArgument;
    return seq_.init(storage, cfg.seq_block);
  }

  /// Queues a sample for process() (call from the sampling timer). kFull when the sample buffer
  /// is full: the sample is dropped and counted in drops.buffer.
  Status submit(const Sample& s) { return samples_.push(s); }

  /// Takes the oldest queued sample into *out (kEmpty when none), for a caller that must hold a
  /// lock only while touching the sample buffer and run record() outside it (the board glue:
  /// record() may write the seq block to NVS flash, which is not allowed in a critical section).
  Status take_sample(Sample* out) { return samples_.pop(out); }

  /// Runs record() on every queued sample, oldest first. Returns how many were processed.
  size_t process() {
    size_t n = 0;
    Sample s;
    while (samples_.pop(&s) == Status::kOk) {
      record(s);
      ++n;
    }
    return n;
  }

  /// Processes one sample: rejects non-finite and out-of-range readings (drops.invalid),
  /// updates each channel's window and detectors, then assigns a seq and stamps the message
  /// (kOk / kDroppedOldest when the outbox overflowed) or holds it until the clock is set
  /// (kHeld). Errors: kNotFinite / kOutOfRange / kInvalidArgument when no reading is usable
  /// (nothing queued), kStorageError when no seq could be persisted (message lost, counted).
  Status record(const Sample& s) {
    Message m;
    Status first_error = Status::kInvalidArgument;
    const size_t n_in = s.count < kMaxReadings ? s.count : kMaxReadings;
    for (size_t i = 0; i < n_in; ++i) {
      const Reading& r = s.readings[i];
      const Status st = observe(s.mono_ms, r);
      if (st != Status::kOk) {
        ++invalid_;
        if (m.count == 0) first_error = st;
        continue;
      }
      m.readings[m.count++] = r;
    }
    if (m.count == 0) return first_error;
    if (seq_.next(&m.seq) != Status::kOk) {
      ++storage_errors_;
      return Status::kStorageError;
    }
    if (clock_.to_epoch(s.mono_ms, &m.ts) != Status::kOk) {
      m.ts = s.mono_ms;  // uptime until the clock is set
      held_.push(m);
      return Status::kHeld;
    }
    return outbox_.push(m);
  }

  /// SNTP (or another source) says the wall clock read epoch_ms at uptime mono_ms. The first
  /// valid call stamps and releases the held messages, in order, into the outbox.
  /// kInvalidArgument for epoch_ms before 2020-01-01 (ignored).
  Status set_clock(int64_t mono_ms, int64_t epoch_ms) {
    const Status st = clock_.set(mono_ms, epoch_ms);
    if (st != Status::kOk) return st;
    Message m;
    while (held_.pop(&m) == Status::kOk) {
      clock_.to_epoch(m.ts, &m.ts);
      outbox_.push(m);
    }
    return Status::kOk;
  }

  /// Encodes m in the configured format with the current drop counters into buf[0..cap)
  /// (NUL-terminated; *len = length without the NUL). The JSON head (`{"device_id":..,"seq":`)
  /// is rendered once by init() and the "drops" member only when a counter changed; with
  /// cap >= 512 a contract JSON message of up to 6 readings is written without per-byte
  /// bounds checks. Errors: those of encode_json_head / encode_senml.
  Status encode(const Message& m, char* buf, size_t cap, size_t* len) {
    if (cfg_.format == PayloadFormat::kSenml) {
      const DropCounters d = drops();
      return encode_senml(cfg_.device_id, m, &d, buf, cap, len);
    }
    refresh_drops();
    return encode_json_head(json_head_, head_len_, m, drops_json_, drops_len_, buf, cap, len);
  }

  /// The next payload to publish, by samples_per_message: encodes the next up to
  /// samples_per_message unsent outbox messages (consecutive seqs) into buf[0..cap) and sets
  /// *first_seq and *n (the messages it covers). With samples_per_message 1 that is one
  /// message in the configured format (encode()); above 1 a batch (encode_json_batch_head),
  /// sent only when samples_per_message samples are unsent, or when flush is true (e.g. end of
  /// data, or the oldest has waited long enough), or a gap in seq ends the run. The caller
  /// publishes the payload (QoS 1), then calls outbox().mark_sent(*n) and, on the PUBACK of
  /// that one MQTT message, outbox().ack_batch(*first_seq, *n). Size buf with
  /// json_batch_bound(samples_per_message) (or >= 512 for one message).
  /// kEmpty: nothing due (*n = 0). Encoding errors (e.g. kBufferTooSmall) are returned with
  /// *first_seq / *n set, so the caller can decide what to do with those messages.
  Status next_payload(bool flush, char* buf, size_t cap, size_t* len, uint64_t* first_seq,
                      size_t* n) {
    const size_t k = cfg_.samples_per_message;
    *n = outbox_.unsent_run(k);
    *len = 0;
    if (*n == 0 || (*n < k && !flush && *n == outbox_.unsent())) {
      *n = 0;
      return Status::kEmpty;
    }
    const Message& first = outbox_.unsent_at(0);
    *first_seq = first.seq;
    if (k == 1) return encode(first, buf, cap, len);
    for (size_t i = 0; i < *n; ++i) batch_[i] = &outbox_.unsent_at(i);
    refresh_drops();
    return encode_json_batch_head(json_head_, head_len_, batch_, *n, drops_json_, drops_len_, buf,
                                  cap, len);
  }

  /// Cumulative drop counters since boot (reported in every payload).
  DropCounters drops() const {
    DropCounters d;
    d.buffer = samples_.dropped();
    d.outbox = outbox_.dropped();
    d.invalid = invalid_;
    d.clock = held_.dropped();
    d.storage = storage_errors_;
    return d;
  }

  Outbox<kOutboxCap>& outbox() { return outbox_; }
  const Outbox<kOutboxCap>& outbox() const { return outbox_; }
  const EventClock& clock() const { return clock_; }
  size_t held() const { return held_.size(); }
  const NodeEvents& events() const { return events_; }
  const char* device_id() const { return cfg_.device_id; }
  /// The seq the next message will get.
  uint64_t next_seq() const { return seq_.peek(); }
  /// Sliding window of a configured sensor, or nullptr.
  const SlidingWindow<kWindowCap>* window(Sensor s) const {
    const auto si = static_cast<size_t>(s);
    return si < kSensorCount && slot_[si] != kNone ? &ch_[slot_[si]].window : nullptr;
  }
  /// True while any channel's hysteresis alarm is raised.
  bool alarm_active() const {
    for (size_t i = 0; i < n_ch_; ++i)
      if (ch_[i].hyst.active()) return true;
    return false;
  }

 private:
  static constexpr size_t kSensorCount = static_cast<size_t>(Sensor::kCount);
  static constexpr uint8_t kNone = 0xFF;
  struct Channel {
    ChannelConfig cfg;
    SlidingWindow<kWindowCap> window;
    EwmaZScore z;
    Hysteresis hyst;
  };

  /// Re-renders the cached "drops" member when a counter changed.
  void refresh_drops() {
    const DropCounters d = drops();
    if (drops_len_ == 0 || std::memcmp(&d, &drops_cached_, sizeof(d)) != 0) {
      drops_cached_ = d;
      drops_len_ = render_drops_json(d, drops_json_);
    }
  }

  Status observe(int64_t mono_ms, const Reading& r) {
    const auto si = static_cast<size_t>(r.sensor);
    if (si >= kSensorCount || slot_[si] == kNone) return Status::kInvalidArgument;
    if (!std::isfinite(r.value)) return Status::kNotFinite;
    Channel& c = ch_[slot_[si]];
    if (r.value < c.cfg.min_valid || r.value > c.cfg.max_valid) return Status::kOutOfRange;
    c.window.add(mono_ms, r.value);  // kOutOfOrder only if uptime went backwards: ignored
    ZResult z;
    const bool warmed = c.z.warmed_up();
    const double base = c.z.mean();
    if (c.z.update(r.value, &z) == Status::kOk && z.anomalous) ++events_.z_anomalies;
    Edge e;
    c.hyst.update(r.value, &e);
    if (e == Edge::kRaised) ++events_.threshold_raised;
    if (e == Edge::kCleared) ++events_.threshold_cleared;
    if (r.sensor == cfg_.spike_sensor && warmed &&
        static_cast<double>(r.value) >= cfg_.spike_ratio * base) {
      ++events_.spikes;
      seq_detector_.on_spike(mono_ms);
    }
    if (r.sensor == cfg_.rise_sensor && seq_detector_.on_temperature(mono_ms, r.value)) {
      ++events_.sequence_matches;
    }
    return Status::kOk;
  }

  NodeConfig cfg_;
  Channel ch_[kChannels];
  uint8_t slot_[kSensorCount] = {};
  size_t n_ch_ = 0;
  RingBuffer<Sample, kSampleCap, OverflowPolicy::kRejectNew> samples_;
  RingBuffer<Message, kHeldCap, OverflowPolicy::kOverwriteOldest> held_;
  Outbox<kOutboxCap> outbox_;
  SeqCounter seq_;
  EventClock clock_;
  SequenceDetector seq_detector_;
  NodeEvents events_;
  uint32_t invalid_ = 0;
  uint32_t storage_errors_ = 0;
  char json_head_[kJsonHeadMax] = {};
  size_t head_len_ = 0;
  DropCounters drops_cached_;
  char drops_json_[128] = {};
  size_t drops_len_ = 0;
  const Message* batch_[kMaxSamplesPerMessage] = {};  // the run next_payload() encodes
};

}  // namespace fw
