// On-device window statistics: count, mean, min, max and standard deviation.
//
// Mean and variance use Welford's online algorithm (B. P. Welford, "Note on a method for
// calculating corrected sums of squares and products", Technometrics 4(3), 1962, 419-420),
// with the matching removal step for sliding windows (D. Knuth, TAOCP vol. 2, 3rd ed.,
// 4.2.2; see also T. Finch, "Incremental calculation of weighted mean and variance", 2009).
//
// Sliding min/max use a monotonic deque (the "ascending minima" technique): each sample is
// pushed once and popped at most once, so an update is O(1) amortised, and the deque needs at
// most as many slots as the window, so its capacity is fixed at compile time. A plain O(1)
// running min/max is impossible once old samples leave the window.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "ring_buffer.h"
#include "status.h"

namespace fw {

/// Result of a window, in the unit of the samples. stddev is the sample standard deviation
/// (divisor n - 1), 0 when count < 2. min/max/mean are NaN when count == 0.
struct WindowStats {
  uint32_t count = 0;
  double mean = NAN;
  double min = NAN;
  double max = NAN;
  double stddev = 0.0;
  int64_t start_ms = 0;  ///< tumbling time windows: window start (inclusive), else first sample's ts
  int64_t end_ms = 0;    ///< tumbling time windows: window end (exclusive), else last sample's ts
};

/// Welford accumulator: add() and remove() are O(1). Values in any unit.
class Welford {
 public:
  void add(double x) {
    ++n_;
    const double d = x - mean_;
    mean_ += d / static_cast<double>(n_);
    m2_ += d * (x - mean_);
  }
  /// Removes a value previously added (sliding windows). Precondition: count() > 0.
  void remove(double x) {
    if (n_ <= 1) {
      reset();
      return;
    }
    const double old_mean = mean_;
    --n_;
    mean_ -= (x - old_mean) / static_cast<double>(n_);
    m2_ -= (x - old_mean) * (x - mean_);
    if (m2_ < 0.0) m2_ = 0.0;  // rounding can push it a hair below zero
  }
  void reset() { n_ = 0; mean_ = 0.0; m2_ = 0.0; }
  uint32_t count() const { return n_; }
  double mean() const { return n_ ? mean_ : NAN; }
  /// Sample variance (divisor n - 1); 0 when count() < 2.
  double variance() const { return n_ > 1 ? m2_ / static_cast<double>(n_ - 1) : 0.0; }
  double stddev() const { return std::sqrt(variance()); }

 private:
  uint32_t n_ = 0;
  double mean_ = 0.0;
  double m2_ = 0.0;
};

namespace detail {

/// Monotonic deque of (sample index, value) with at most N entries. For a max-deque the values
/// decrease from front to back, for a min-deque they increase; the front is the extreme.
template <size_t N, bool kIsMax>
class MonoDeque {
 public:
  struct Entry {
    uint32_t idx;
    float v;
  };
  void push(uint32_t idx, float v) {
    while (!q_.empty() && (kIsMax ? q_.back().v <= v : q_.back().v >= v)) q_.pop_back(nullptr);
    q_.push(Entry{idx, v});  // never full: at most N live samples, each once
  }
  /// Drops entries whose sample index is older than first_live.
  void expire(uint32_t first_live) {
    while (!q_.empty() && static_cast<int32_t>(q_.front().idx - first_live) < 0) q_.pop(nullptr);
  }
  float extreme() const { return q_.empty() ? NAN : q_.front().v; }
  void clear() { q_.clear(); }

 private:
  RingBuffer<Entry, N, OverflowPolicy::kRejectNew> q_;
};

}  // namespace detail

/// Sliding window over the last N samples (count-based) or the last span_ms milliseconds
/// (time-based, when constructed with span_ms > 0), holding at most N samples.
/// Time-based: after add(ts), the window holds the samples with ts in (ts - span_ms, ts]; a
/// sample exactly span_ms old has left. If more than N samples fall inside the span, the
/// oldest are evicted early and counted in overflow_evictions(): size N for the densest
/// cadence you expect (e.g. 60 s at 1 Hz -> N >= 60).
/// Cost: O(1) amortised per add (Welford add/remove + monotonic deques). Static RAM:
/// N * 16 bytes (samples) + 2 * N * 8 bytes (deques) + a few words.
template <size_t N>
class SlidingWindow {
 public:
  /// span_ms == 0: count-based window of the last N samples. span_ms > 0: time-based.
  explicit SlidingWindow(int64_t span_ms = 0) : span_ms_(span_ms) {}

  /// Adds sample x (unit of the signal) taken at ts_ms (any monotonic ms clock).
  /// Returns kOk, kDroppedOldest (time window was full: oldest evicted early), kNotFinite
  /// (NaN/inf: ignored), kOutOfOrder (time-based and ts_ms < previous ts: ignored).
  Status add(int64_t ts_ms, float x) {
    if (!std::isfinite(x)) return Status::kNotFinite;
    if (span_ms_ > 0 && samples_.size() > 0 && ts_ms < samples_.back().ts) {
      return Status::kOutOfOrder;
    }
    if (span_ms_ > 0) expire(ts_ms);
    Status st = Status::kOk;
    if (samples_.full()) {
      if (span_ms_ > 0) {
        ++overflow_evictions_;
        st = Status::kDroppedOldest;
      }
      evict_oldest();
    }
    samples_.push(Sample{ts_ms, x});
    welford_.add(x);
    const uint32_t idx = next_idx_++;
    max_.push(idx, x);
    min_.push(idx, x);
    return st;
  }

  /// Time-based windows: drops samples that are span_ms old at now_ms (no-op if count-based).
  void advance(int64_t now_ms) {
    if (span_ms_ > 0) expire(now_ms);
  }

  /// Current statistics (start_ms/end_ms = oldest/newest sample's ts).
  WindowStats stats() const {
    WindowStats s;
    s.count = welford_.count();
    if (s.count == 0) return s;
    s.mean = welford_.mean();
    s.stddev = welford_.stddev();
    s.min = min_.extreme();
    s.max = max_.extreme();
    s.start_ms = samples_.front().ts;
    s.end_ms = samples_.back().ts;
    return s;
  }
  uint32_t count() const { return welford_.count(); }
  double mean() const { return welford_.mean(); }
  float min() const { return min_.extreme(); }
  float max() const { return max_.extreme(); }
  /// Samples evicted before leaving the time span because the window was full.
  uint32_t overflow_evictions() const { return overflow_evictions_; }
  void clear() {
    samples_.clear();
    welford_.reset();
    min_.clear();
    max_.clear();
  }

 private:
  struct Sample {
    int64_t ts;
    float v;
  };
  void expire(int64_t now_ms) {
    while (!samples_.empty() && samples_.front().ts <= now_ms - span_ms_) evict_oldest();
  }
  void evict_oldest() {
    welford_.remove(samples_.front().v);  // callers ensure !empty()
    samples_.pop(nullptr);
    const uint32_t first_live = next_idx_ - static_cast<uint32_t>(samples_.size());
    max_.expire(first_live);
    min_.expire(first_live);
  }

  int64_t span_ms_;
  RingBuffer<Sample, N, OverflowPolicy::kRejectNew> samples_;
  Welford welford_;
  detail::MonoDeque<N, true> max_;
  detail::MonoDeque<N, false> min_;
  uint32_t next_idx_ = 0;
  uint32_t overflow_evictions_ = 0;
};

/// Tumbling window: either every `count` samples (count > 0) or aligned time buckets
/// [k*span_ms, (k+1)*span_ms) (span_ms > 0, same alignment as Flink's tumbling windows).
/// O(1) per add, no sample storage (running Welford + min/max).
class TumblingWindow {
 public:
  /// Count-based: closes after every `count` samples.
  static TumblingWindow by_count(uint32_t count) { return TumblingWindow(count, 0); }
  /// Time-based: buckets of span_ms ms; a sample at exactly the bucket end opens the next one.
  static TumblingWindow by_time(int64_t span_ms) { return TumblingWindow(0, span_ms); }

  /// Adds x at ts_ms. Returns kWindowClosed and writes the closed window to *closed when the
  /// sample completes a count window or falls into a later time bucket than the open one
  /// (then x starts the new window). kOk otherwise; kNotFinite (ignored); kOutOfOrder (time
  /// window and ts_ms before the open bucket: ignored); kInvalidArgument (misconfigured).
  Status add(int64_t ts_ms, float x, WindowStats* closed) {
    if (!std::isfinite(x)) return Status::kNotFinite;
    if (count_ == 0 && span_ms_ <= 0) return Status::kInvalidArgument;
    Status st = Status::kOk;
    if (span_ms_ > 0) {
      const int64_t start = floor_div(ts_ms, span_ms_) * span_ms_;
      if (started_ && start < start_) return Status::kOutOfOrder;
      if (w_.count() > 0 && start > start_) {
        emit(closed);
        st = Status::kWindowClosed;
      }
      if (w_.count() == 0) start_ = start;
      started_ = true;
    } else if (w_.count() == 0) {
      start_ = ts_ms;
    }
    w_.add(x);
    if (w_.count() == 1 || x < min_) min_ = x;
    if (w_.count() == 1 || x > max_) max_ = x;
    last_ = ts_ms;
    if (count_ > 0 && w_.count() == count_) {
      emit(closed);
      st = Status::kWindowClosed;
    }
    return st;
  }

 private:
  TumblingWindow(uint32_t count, int64_t span_ms) : count_(count), span_ms_(span_ms) {}
  static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }
  void emit(WindowStats* out) {
    if (out != nullptr) {
      out->count = w_.count();
      out->mean = w_.mean();
      out->stddev = w_.stddev();
      out->min = min_;
      out->max = max_;
      out->start_ms = start_;
      out->end_ms = span_ms_ > 0 ? start_ + span_ms_ : last_;
    }
    w_.reset();
  }
  uint32_t count_;
  int64_t span_ms_;
  Welford w_;
  float min_ = 0.0f;
  float max_ = 0.0f;
  int64_t start_ = 0;
  int64_t last_ = 0;
  bool started_ = false;
};

}  // namespace fw
