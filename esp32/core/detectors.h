// Event detectors: threshold with hysteresis, and z-score against an EWMA baseline.
#pragma once
#include <cmath>
#include <cstdint>

#include "status.h"
#include "window_stats.h"

namespace fw {

/// What a detector update changed.
enum class Edge : uint8_t { kNone, kRaised, kCleared };

/// Upper threshold with hysteresis (Schmitt trigger). The alarm is raised when a sample is
/// >= high and cleared when a sample is <= low, with low < high; samples strictly between keep
/// the current state, so noise around one threshold does not toggle the alarm.
/// Units: those of the signal (e.g. degrees C, g).
class Hysteresis {
 public:
  /// Returns kInvalidArgument (and disables the detector) unless low < high, both finite.
  Status configure(float high, float low) {
    if (!std::isfinite(high) || !std::isfinite(low) || !(low < high)) {
      enabled_ = false;
      return Status::kInvalidArgument;
    }
    high_ = high;
    low_ = low;
    enabled_ = true;
    active_ = false;
    return Status::kOk;
  }
  /// Feeds one sample. Writes the edge (kNone if disabled or unchanged) to *edge.
  /// Returns kNotFinite (state unchanged) for NaN/inf.
  Status update(float x, Edge* edge) {
    *edge = Edge::kNone;
    if (!std::isfinite(x)) return Status::kNotFinite;
    if (!enabled_) return Status::kOk;
    if (!active_ && x >= high_) {
      active_ = true;
      *edge = Edge::kRaised;
    } else if (active_ && x <= low_) {
      active_ = false;
      *edge = Edge::kCleared;
    }
    return Status::kOk;
  }
  bool active() const { return active_; }
  bool enabled() const { return enabled_; }

 private:
  float high_ = 0.0f;
  float low_ = 0.0f;
  bool enabled_ = false;
  bool active_ = false;
};

/// Parameters of EwmaZScore.
struct EwmaConfig {
  /// Smoothing weight lambda in (0, 1]; NIST suggests 0.2..0.3 for control charts, smaller
  /// values give a slower, steadier baseline. Default 0.05 (effective memory ~ 2/lambda = 40
  /// samples).
  double lambda = 0.05;
  /// |z| >= k flags an anomaly. 3 = the usual 3-sigma control limit (NIST e-Handbook 6.3.2).
  double k_sigma = 3.0;
  /// Samples used to seed the baseline (plain mean / variance) before any verdict.
  uint32_t warmup = 30;
  /// Floor for sigma, in the signal's unit, so a flat signal does not give infinite z.
  double min_sigma = 1e-3;
};

/// Verdict of one EwmaZScore update.
struct ZResult {
  double z = 0.0;          ///< (x - baseline mean) / baseline sigma, dimensionless
  double mean = NAN;       ///< baseline mean before this sample (signal unit)
  double sigma = NAN;      ///< baseline sigma before this sample (signal unit)
  bool anomalous = false;  ///< |z| >= k_sigma
};

/// z-score of each sample against an exponentially weighted moving baseline.
///
/// Baseline (EWMA statistic), NIST/SEMATECH e-Handbook of Statistical Methods, section
/// 6.3.2.4 "EWMA Control Charts" (after S. W. Roberts, "Control chart tests based on
/// geometric moving averages", Technometrics 1, 1959):
///     mean_t = lambda * x_t + (1 - lambda) * mean_{t-1}
/// Exponentially weighted variance, T. Finch, "Incremental calculation of weighted mean and
/// variance" (University of Cambridge, 2009):
///     var_t = (1 - lambda) * (var_{t-1} + lambda * (x_t - mean_{t-1})^2)
/// z_t = (x_t - mean_{t-1}) / max(sqrt(var_{t-1}), min_sigma).
///
/// The first `warmup` samples seed mean and variance with Welford (no verdict: kWarmingUp).
/// After that, a sample with |z| >= k_sigma is reported anomalous and is NOT folded into the
/// baseline, so a fault does not teach the baseline that the fault is normal. (Consequence:
/// a permanent level shift stays anomalous until reset(); that is the intended behaviour for
/// a degrading bearing.) O(1) per update, no storage.
class EwmaZScore {
 public:
  /// Returns kInvalidArgument unless 0 < lambda <= 1, k_sigma > 0, min_sigma > 0.
  Status configure(const EwmaConfig& c) {
    if (!(c.lambda > 0.0 && c.lambda <= 1.0) || !(c.k_sigma > 0.0) || !(c.min_sigma > 0.0)) {
      return Status::kInvalidArgument;
    }
    cfg_ = c;
    reset();
    return Status::kOk;
  }
  void reset() {
    seed_.reset();
    n_ = 0;
    mean_ = 0.0;
    var_ = 0.0;
  }
  /// Feeds x (signal unit). Returns kWarmingUp while seeding (r->anomalous false), kOk with
  /// a verdict in *r afterwards, kNotFinite for NaN/inf (ignored).
  Status update(float xf, ZResult* r) {
    *r = ZResult{};
    if (!std::isfinite(xf)) return Status::kNotFinite;
    const double x = xf;
    if (n_ < cfg_.warmup) {
      seed_.add(x);
      ++n_;
      mean_ = seed_.mean();
      var_ = seed_.variance();
      return Status::kWarmingUp;
    }
    double sigma = std::sqrt(var_);
    if (sigma < cfg_.min_sigma) sigma = cfg_.min_sigma;
    const double d = x - mean_;
    r->mean = mean_;
    r->sigma = sigma;
    r->z = d / sigma;
    r->anomalous = std::fabs(r->z) >= cfg_.k_sigma;
    if (!r->anomalous) {
      const double l = cfg_.lambda;
      var_ = (1.0 - l) * (var_ + l * d * d);
      mean_ += l * d;
    }
    ++n_;
    return Status::kOk;
  }
  bool warmed_up() const { return n_ >= cfg_.warmup; }
  /// Baseline mean (signal unit); NaN before the first sample.
  double mean() const { return n_ ? mean_ : NAN; }
  double sigma() const { return std::sqrt(var_); }

 private:
  EwmaConfig cfg_;
  Welford seed_;
  uint32_t n_ = 0;
  double mean_ = 0.0;
  double var_ = 0.0;
};

}  // namespace fw
