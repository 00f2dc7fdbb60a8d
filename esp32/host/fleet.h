// Host only: the pure parts of the multi-device virtual node (one process simulating N devices,
// each with its own MQTT connection, credential, topic and firmware-core state, on one event
// loop). See esp32/README.md "Several devices in one process".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/status.h"

namespace fw {

/// One device of a multi-device node.
struct DeviceEntry {
  std::string id;             ///< device id, [A-Za-z0-9_.-]{1,64}; also the MQTT username
  std::string password_file;  ///< file whose first line is the password ("" = none)
  std::string seq_file;       ///< seq persistence ("" = the node's default for this id)
};

/// Parses a device list: one device per line, `DEVICE_ID [PASSWORD_FILE [SEQ_FILE]]`, fields
/// separated by spaces or tabs; blank lines and lines starting with '#' are skipped. Appends
/// to *out in file order. Errors (nothing appended, *bad_line = 1-based line number; 0 when the
/// list is empty): kInvalidArgument for a bad device id, more than three fields or a device id
/// given twice; kEmpty when no device is listed.
Status parse_device_list(const std::string& text, std::vector<DeviceEntry>* out, size_t* bad_line);

/// The ids of `--devices N`: prefix-0000 .. prefix-(N-1), zero-padded to at least 4 digits
/// (prefix-10000 and up have 5). kInvalidArgument when n is 0 or an id would be invalid
/// (prefix too long, bad characters); *out is then unchanged.
Status numbered_devices(const std::string& prefix, size_t n, std::vector<DeviceEntry>* out);

/// Wall time (microseconds after the node's start) at which a reading whose pacing clock reads
/// pace_ms is due at `speedup` event-time seconds per wall second (> 0): pace_ms * 1000 /
/// speedup, as a single node paces.
int64_t due_after_start_us(int64_t pace_ms, double speedup);

/// When each of n devices next wants the event loop (microseconds on the node's clock), as an
/// indexed binary min-heap: set() moves a device's wake time earlier or later in O(log n),
/// top()/pop() give the earliest. All storage is taken by the constructor: no heap
/// allocation afterwards, however often the times change.
class WakeQueue {
 public:
  explicit WakeQueue(size_t n);
  /// Device i wants to run at t_us (replaces its earlier wake time, if any). i < size().
  void set(size_t i, int64_t t_us);
  /// Device i needs no wake (no-op when it has none).
  void clear(size_t i);
  bool empty() const { return heap_.empty(); }
  /// Earliest wake time; precondition !empty().
  int64_t top_time() const { return time_[heap_.front()]; }
  /// Device with the earliest wake time (ties: any); precondition !empty().
  size_t top() const { return heap_.front(); }
  /// Removes and returns top().
  size_t pop();
  /// Whether device i has a wake time, and which.
  bool scheduled(size_t i) const { return pos_[i] != kNone; }
  int64_t time_of(size_t i) const { return time_[i]; }
  size_t size() const { return time_.size(); }

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);
  void up(size_t k);
  void down(size_t k);
  void swap_at(size_t a, size_t b);
  std::vector<int64_t> time_;  // per device
  std::vector<size_t> pos_;    // per device: index in heap_, or kNone
  std::vector<size_t> heap_;   // device indices; capacity n reserved up front
};

}  // namespace fw
