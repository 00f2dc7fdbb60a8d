#include "fleet.h"

#include <cstdio>
#include <set>
#include <sstream>

#include "../core/encoder.h"

namespace fw {

Status parse_device_list(const std::string& text, std::vector<DeviceEntry>* out, size_t* bad_line) {
  std::vector<DeviceEntry> parsed;
  std::set<std::string> seen;
  std::istringstream in(text);
  std::string line;
  size_t n = 0;
  *bad_line = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream fields(line);
    std::string f[4];
    size_t k = 0;
    while (k < 4 && (fields >> f[k])) ++k;
    if (k == 0 || f[0][0] == '#') continue;
    if (k > 3 || !valid_device_id(f[0].c_str()) || !seen.insert(f[0]).second) {
      *bad_line = n;
      return Status::kInvalidArgument;
    }
    parsed.push_back(DeviceEntry{f[0], f[1], f[2]});
  }
  if (parsed.empty()) return Status::kEmpty;
  out->insert(out->end(), parsed.begin(), parsed.end());
  return Status::kOk;
}

Status numbered_devices(const std::string& prefix, size_t n, std::vector<DeviceEntry>* out) {
  if (n == 0) return Status::kInvalidArgument;
  std::vector<DeviceEntry> ids;
  ids.reserve(n);
  char num[32];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(num, sizeof(num), "%04zu", i);
    DeviceEntry e;
    e.id = prefix + "-" + num;
    if (!valid_device_id(e.id.c_str())) return Status::kInvalidArgument;
    ids.push_back(std::move(e));
  }
  out->insert(out->end(), ids.begin(), ids.end());
  return Status::kOk;
}

int64_t due_after_start_us(int64_t pace_ms, double speedup) {
  return static_cast<int64_t>(static_cast<double>(pace_ms) * 1000.0 / speedup);
}

WakeQueue::WakeQueue(size_t n) : time_(n, 0), pos_(n, kNone) { heap_.reserve(n); }

void WakeQueue::set(size_t i, int64_t t_us) {
  if (pos_[i] == kNone) {
    time_[i] = t_us;
    pos_[i] = heap_.size();
    heap_.push_back(i);  // within the reserved capacity: no allocation
    up(pos_[i]);
    return;
  }
  const int64_t old = time_[i];
  time_[i] = t_us;
  if (t_us < old) up(pos_[i]);
  else if (t_us > old) down(pos_[i]);
}

void WakeQueue::clear(size_t i) {
  const size_t k = pos_[i];
  if (k == kNone) return;
  const size_t last = heap_.size() - 1;
  if (k != last) swap_at(k, last);
  heap_.pop_back();
  pos_[i] = kNone;
  if (k < heap_.size()) {
    up(k);
    down(k);
  }
}

size_t WakeQueue::pop() {
  const size_t i = heap_.front();
  clear(i);
  return i;
}

void WakeQueue::swap_at(size_t a, size_t b) {
  const size_t ia = heap_[a], ib = heap_[b];
  heap_[a] = ib;
  heap_[b] = ia;
  pos_[ib] = a;
  pos_[ia] = b;
}

void WakeQueue::up(size_t k) {
  while (k > 0) {
    const size_t parent = (k - 1) / 2;
    if (time_[heap_[parent]] <= time_[heap_[k]]) break;
    swap_at(k, parent);
    k = parent;
  }
}

void WakeQueue::down(size_t k) {
  const size_t n = heap_.size();
  for (;;) {
    size_t least = k;
    const size_t l = 2 * k + 1, r = l + 1;
    if (l < n && time_[heap_[l]] < time_[heap_[least]]) least = l;
    if (r < n && time_[heap_[r]] < time_[heap_[least]]) least = r;
    if (least == k) return;
    swap_at(k, least);
    k = least;
  }
}

}  // namespace fw
