#include "encoder.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace fw {

namespace {

const char* const kSensorNames[] = {"temp",         "temp_c",    "h_rms_g",
                                    "v_rms_g",      "peak_abs_g", "humidity_pct",
                                    "light_lux",    "co2_ppm",   "humidity_ratio"};
// RFC 8428 section 12.1 (Cel, %RH, lx) and RFC 8798 (ppm). g is not a SenML unit (m/s2 is,
// but converting would change the contract values), nor is kg/kg; NAB's unit is unknown.
const char* const kSenmlUnits[] = {nullptr, "Cel", nullptr, nullptr, nullptr,
                                   "%RH",   "lx",  "ppm",   nullptr};
static_assert(sizeof(kSensorNames) / sizeof(kSensorNames[0]) ==
                  static_cast<size_t>(Sensor::kCount),
              "one name per sensor");
static_assert(sizeof(kSenmlUnits) / sizeof(kSenmlUnits[0]) == static_cast<size_t>(Sensor::kCount),
              "one unit per sensor");

/// A reading's JSON member name with quotes and colon ("temp_c":), padded so it can be copied
/// with one fixed-size copy; len = used characters.
struct NameLit {
  char s[24];
  uint8_t len;
};
const NameLit kNameLits[] = {{"\"temp\":", 7},          {"\"temp_c\":", 9},
                             {"\"h_rms_g\":", 10},      {"\"v_rms_g\":", 10},
                             {"\"peak_abs_g\":", 13},   {"\"humidity_pct\":", 15},
                             {"\"light_lux\":", 12},    {"\"co2_ppm\":", 10},
                             {"\"humidity_ratio\":", 17}};
static_assert(sizeof(kNameLits) / sizeof(kNameLits[0]) == static_cast<size_t>(Sensor::kCount),
              "one member name per sensor");

const double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4,  1e5,  1e6,
                         1e7, 1e8, 1e9, 1e10, 1e11, 1e12};

/// Epoch ms as JSON digits (defined with the number formatters below).
inline size_t put_ts(uint64_t ts, char* out);

/// Appends to a fixed buffer; remembers overflow instead of failing each call.
class Writer {
 public:
  Writer(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  void put(char c) {
    if (pos_ + 1 < cap_) {
      buf_[pos_++] = c;
    } else {
      overflow_ = true;
    }
  }
  void put(const char* s, size_t n) {
    if (pos_ + n < cap_) {
      std::memcpy(buf_ + pos_, s, n);
      pos_ += n;
    } else {
      overflow_ = true;
    }
  }
  template <size_t K>
  void lit(const char (&s)[K]) {  // constant size: the compiler inlines the copy
    if (pos_ + (K - 1) < cap_) {
      std::memcpy(buf_ + pos_, s, K - 1);
      pos_ += K - 1;
    } else {
      overflow_ = true;
    }
  }
  void str(const char* s) { put(s, std::strlen(s)); }
  void u64(uint64_t v) {
    if (pos_ + 21 < cap_) {
      pos_ += format_u64(v, buf_ + pos_);  // straight into the buffer
    } else {
      char tmp[24];
      put(tmp, format_u64(v, tmp));
    }
  }
  void num(float v) {
    if (pos_ + 33 < cap_) {
      pos_ += format_number(v, buf_ + pos_);
    } else {
      char tmp[32];
      put(tmp, format_number(v, tmp));
    }
  }
  void name(const NameLit& n) { put(n.s, n.len); }
  void ts(uint64_t v) {
    if (pos_ + 21 < cap_) {
      pos_ += put_ts(v, buf_ + pos_);
    } else {
      char tmp[24];
      put(tmp, put_ts(v, tmp));
    }
  }
  Status finish(size_t* len) {
    if (cap_ == 0 || overflow_) {
      if (cap_ > 0) buf_[0] = '\0';
      if (len != nullptr) *len = 0;
      return Status::kBufferTooSmall;
    }
    buf_[pos_] = '\0';
    if (len != nullptr) *len = pos_;
    return Status::kOk;
  }

 private:
  char* buf_;
  size_t cap_;
  size_t pos_ = 0;
  bool overflow_ = false;
};

/// Writer without bounds checks, for a buffer known to hold the worst case (json_bound()).
/// Fixed-size copies may write a few bytes past the text; the bound includes them.
class RawWriter {
 public:
  explicit RawWriter(char* buf) : start_(buf), p_(buf) {}
  void put(char c) { *p_++ = c; }
  void put(const char* s, size_t n) {
    std::memcpy(p_, s, n);
    p_ += n;
  }
  template <size_t K>
  void lit(const char (&s)[K]) {
    std::memcpy(p_, s, K - 1);
    p_ += K - 1;
  }
  void u64(uint64_t v) { p_ += format_u64(v, p_); }
  void ts(uint64_t v) { p_ += put_ts(v, p_); }
  void num(float v) { p_ += format_number(v, p_); }
  void name(const NameLit& n) {
    std::memcpy(p_, n.s, sizeof(n.s));
    p_ += n.len;
  }
  Status finish(size_t* len) {
    *p_ = '\0';
    if (len != nullptr) *len = static_cast<size_t>(p_ - start_);
    return Status::kOk;
  }

 private:
  char* start_;
  char* p_;
};

Status check_message(const Message& m) {
  if (m.count == 0 || m.count > kMaxReadings) return Status::kInvalidArgument;
  if (m.ts < kMinEpochMs) return Status::kInvalidArgument;
  for (uint8_t i = 0; i < m.count; ++i) {
    if (static_cast<uint8_t>(m.readings[i].sensor) >= static_cast<uint8_t>(Sensor::kCount)) {
      return Status::kInvalidArgument;
    }
    if (!std::isfinite(m.readings[i].value)) return Status::kNotFinite;
  }
  return Status::kOk;
}

Status check(const char* device_id, const Message& m) {
  if (!valid_device_id(device_id)) return Status::kInvalidArgument;
  return check_message(m);
}

}  // namespace

const char* sensor_name(Sensor s) {
  const auto i = static_cast<size_t>(s);
  return i < static_cast<size_t>(Sensor::kCount) ? kSensorNames[i] : "?";
}

const char* sensor_senml_unit(Sensor s) {
  const auto i = static_cast<size_t>(s);
  return i < static_cast<size_t>(Sensor::kCount) ? kSenmlUnits[i] : nullptr;
}

bool valid_device_id(const char* id) {
  if (id == nullptr) return false;
  size_t n = 0;
  for (; id[n] != '\0'; ++n) {
    const char c = id[n];
    const bool okc = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '.' || c == '-';
    if (!okc || n >= 64) return false;
  }
  return n >= 1;
}

namespace {
const uint64_t kPow10U64[] = {1ULL,
                              10ULL,
                              100ULL,
                              1000ULL,
                              10000ULL,
                              100000ULL,
                              1000000ULL,
                              10000000ULL,
                              100000000ULL,
                              1000000000ULL,
                              10000000000ULL,
                              100000000000ULL,
                              1000000000000ULL,
                              10000000000000ULL,
                              100000000000000ULL,
                              1000000000000000ULL,
                              10000000000000000ULL,
                              100000000000000000ULL,
                              1000000000000000000ULL,
                              10000000000000000000ULL};
// floor(e2 * log10(2)) for e2 = -17 .. 23: the decimal exponent estimate of a float with binary
// exponent e2 (the true floor(log10 v) is this or one more).
const int8_t kLog10Of2Pow[] = {-6, -5, -5, -5, -4, -4, -4, -4, -3, -3, -3, -2, -2, -2,
                               -1, -1, -1, 0,  0,  0,  0,  1,  1,  1,  2,  2,  2,  3,
                               3,  3,  3,  4,  4,  4,  5,  5,  5,  6,  6,  6,  6};
static_assert(sizeof(kLog10Of2Pow) == 41, "e2 = -17 .. 23");

/// The 8 decimal digits of v < 1e8 (leading zeros included) as ASCII in one 64-bit word whose
/// byte i (i = 0 least significant) is the i-th digit from the left. SWAR: both 4-digit halves
/// are split into pairs, then into digits, with multiply-shift divisions in parallel lanes
/// (x * 10486 >> 20 = x / 100 for x < 43699; x * 103 >> 10 = x / 10 for x < 179). Technique
/// as described by D. Lemire, "Converting integers to decimal strings faster with AVX-512"
/// (2022), scalar variant.
inline uint64_t digits8_word(uint32_t v) {
  const uint64_t merged = (v / 10000u) | (static_cast<uint64_t>(v % 10000u) << 32);
  const uint64_t top = ((merged * 10486u) >> 20) & ((0x7FULL << 32) | 0x7FULL);
  const uint64_t bot = merged - 100u * top;
  const uint64_t hundreds = (bot << 16) + top;
  uint64_t tens = (hundreds * 103u) >> 10;
  tens &= (0xFULL << 48) | (0xFULL << 32) | (0xFULL << 16) | 0xFULL;
  tens += (hundreds - 10u * tens) << 8;
  return tens + 0x3030303030303030ULL;
}

/// Stores w (from digits8_word, possibly shifted) as 8 bytes at p, byte 0 first.
inline void store8(char* p, uint64_t w) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::memcpy(p, &w, 8);  // ESP32 (Xtensa) and x86 are little-endian: one store
#else
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(w >> (8 * i));
#endif
}

/// Decimal digits of v (1 for 0): bit length -> estimate (1233/4096 ~ log10 2), one compare.
inline size_t count_digits(uint64_t v) {
#if defined(__GNUC__)
  const int bits = 64 - __builtin_clzll(v | 1);
  const int t = (bits * 1233) >> 12;  // floor(log10 v) or one more
  return static_cast<size_t>(t) + 1 - ((v | 1) < kPow10U64[t] ? 1 : 0);
#else
  size_t n = 1;
  while (n < 20 && v >= kPow10U64[n]) ++n;
  return n;
#endif
}

/// Rare magnitudes (|v| >= 1e7 or < 1e-5), v > 0: integer digits below 1e9 (as 7 significant
/// digits would need an exponent), exponent notation via snprintf otherwise.
size_t format_rare(double v, char* out) {
  if (v >= 1e7 && v < 1e9) return format_u64(static_cast<uint64_t>(v + 0.5), out);
  const int k = std::snprintf(out, 24, "%.7g", v);
  return k > 0 ? static_cast<size_t>(k) : 0;
}

}  // namespace

namespace {

/// v < 1e8 without leading zeros: one word, the leading zeros shifted out. Writes 8 bytes.
inline size_t put_upto8(uint32_t v, char* out) {
  const size_t n = count_digits(v);
  store8(out, digits8_word(v) >> (8 * (8 - n)));
  return n;
}

/// Epoch ms from 2001-09-09 to 2286-11-20 (1e12 <= ts < 1e13): always 13 digits = 5 + 8,
/// no digit count. Writes 13 bytes.
inline size_t put_ts13(uint64_t ts, char* out) {
  const uint64_t top = ts / 100000000ULL;
  store8(out, digits8_word(static_cast<uint32_t>(top)) >> 24);  // "000ddddd" -> 5 digits
  store8(out + 5, digits8_word(static_cast<uint32_t>(ts - top * 100000000ULL)));
  return 13;
}

/// Epoch ms as JSON digits: the 13-digit fast path, format_u64 otherwise.
inline size_t put_ts(uint64_t ts, char* out) {
  return ts >= 1000000000000ULL && ts < 10000000000000ULL ? put_ts13(ts, out)
                                                           : format_u64(ts, out);
}

}  // namespace

size_t format_u64(uint64_t v, char* out) {
  constexpr uint64_t k8 = 100000000ULL;
  if (v < k8) return put_upto8(static_cast<uint32_t>(v), out);
  uint64_t top = v / k8;
  const auto lo = static_cast<uint32_t>(v - top * k8);
  size_t n;
  if (top < k8) {  // 9 .. 16 digits
    n = put_upto8(static_cast<uint32_t>(top), out);
  } else {  // 17 .. 20 digits
    const uint64_t top2 = top / k8;  // < 1845
    n = put_upto8(static_cast<uint32_t>(top2), out);
    store8(out + n, digits8_word(static_cast<uint32_t>(top - top2 * k8)));
    n += 8;
  }
  store8(out + n, digits8_word(lo));
  return n + 8;
}

size_t format_number(float vf, char* out) {
  if (!std::isfinite(vf)) return 0;
  if (vf == 0.0f) {
    out[0] = '0';
    return 1;
  }
  size_t n = 0;
  double v = vf;
  if (v < 0) {
    out[n++] = '-';
    v = -v;
  }
  if (v < 1e-5 || v >= 1e7) return n + format_rare(v, out + n);
  // e10 = floor(log10 v) in [-5, 6], from the float's binary exponent (v >= 1e-5 is normal)
  uint32_t bits;
  std::memcpy(&bits, &vf, sizeof(bits));
  int e10 = kLog10Of2Pow[static_cast<int>((bits >> 23) & 0xFFu) - 127 + 17];
  // t = v * 10^(6 - e10) is exact in double (24-bit v times 5^k <= 5^12 fits in 53 bits), so
  // the comparison settles e10 exactly and t lands in [1e6, 1e7)
  double t = v * kPow10[6 - e10];
  if (t >= 1e7) {
    ++e10;
    t = v * kPow10[6 - e10];
  }
  uint32_t d = static_cast<uint32_t>(t + 0.5);  // 7 significant digits, ties away from zero
  if (d >= 10000000u) {  // rounded up to the next power of ten
    d = 1000000u;
    ++e10;
  }
  char dg[16] = {};  // the 7 digits, then zero padding for the fixed-size copies below
  store8(dg, digits8_word(d) >> 8);  // "0ddddddd": drop the leading zero
  size_t sig = 7;  // significant digits without trailing zeros
  while (sig > 1 && dg[sig - 1] == '0') --sig;
  char* o = out + n;
  if (e10 >= 6) {  // integer of 7 or 8 digits
    std::memcpy(o, dg, 8);
    if (e10 == 7) o[7] = '0';
    return n + static_cast<size_t>(e10) + 1;
  }
  if (e10 >= 0) {  // ddd[.ddd]
    const size_t ip = static_cast<size_t>(e10) + 1;
    std::memcpy(o, dg, 8);
    if (sig <= ip) return n + ip;
    o[ip] = '.';
    std::memcpy(o + ip + 1, dg + ip, 8);
    return n + sig + 1;
  }
  const size_t z = static_cast<size_t>(-e10 - 1);  // 0.000ddd: z zeros after the point
  std::memcpy(o, "0.000000", 8);
  std::memcpy(o + 2 + z, dg, 8);
  return n + 2 + z + sig;
}

namespace {

void put_drops_json(Writer& w, const DropCounters& d) {
  w.lit(",\"drops\":{\"buffer\":");
  w.u64(d.buffer);
  w.lit(",\"outbox\":");
  w.u64(d.outbox);
  w.lit(",\"invalid\":");
  w.u64(d.invalid);
  w.lit(",\"clock\":");
  w.u64(d.clock);
  w.lit(",\"storage\":");
  w.u64(d.storage);
  w.put('}');
}

}  // namespace

size_t render_drops_json(const DropCounters& d, char* out) {
  Writer w(out, 128);
  put_drops_json(w, d);
  size_t len = 0;
  w.finish(&len);
  return len;
}

namespace {

/// One pass over the message: head, seq, ts, readings, tail, closing brace.
template <class W>
void json_body(W& w, const char* head, size_t head_len, const Message& m, const char* tail,
               size_t tail_len) {
  w.put(head, head_len);
  w.u64(m.seq);
  w.lit(",\"ts\":");
  w.ts(static_cast<uint64_t>(m.ts));
  w.lit(",\"readings\":{");
  for (uint8_t i = 0; i < m.count; ++i) {
    if (i > 0) w.put(',');
    w.name(kNameLits[static_cast<size_t>(m.readings[i].sensor)]);
    w.num(m.readings[i].value);
  }
  w.put('}');
  w.put(tail, tail_len);
  w.put('}');
}

/// Bytes json_body may touch for a message of count readings (text, NUL and the slack of
/// RawWriter's fixed-size copies): seq and ts <= 20 digits each, a name slot of 24 and a
/// number slot of 32 per reading (format_number writes at most 24 bytes).
constexpr size_t json_bound(size_t head_len, size_t count, size_t tail_len) {
  return head_len + 20 + 6 + 20 + 13 + count * (24 + 32) + 1 + tail_len + 1 + 1;
}

}  // namespace

size_t render_json_head(const char* device_id, char* out) {
  if (!valid_device_id(device_id)) return 0;
  Writer w(out, kJsonHeadMax);
  w.lit("{\"device_id\":\"");
  w.str(device_id);
  w.lit("\",\"seq\":");
  size_t len = 0;
  w.finish(&len);
  return len;
}

Status encode_json_head(const char* head, size_t head_len, const Message& m, const char* tail,
                        size_t tail_len, char* buf, size_t cap, size_t* len) {
  const Status st = check_message(m);
  if (st != Status::kOk) return st;
  if (tail == nullptr) {  // no drops member (memcpy must not see a null pointer)
    tail = "";
    tail_len = 0;
  }
  if (cap >= json_bound(head_len, m.count, tail_len)) {  // the hot path: no per-write checks
    RawWriter w(buf);
    json_body(w, head, head_len, m, tail, tail_len);
    return w.finish(len);
  }
  Writer w(buf, cap);  // small buffer: checked writes (exact fit allowed)
  json_body(w, head, head_len, m, tail, tail_len);
  return w.finish(len);
}

Status encode_json_trusted(const char* device_id, size_t id_len, const Message& m,
                           const char* drops_json, size_t drops_len, char* buf, size_t cap,
                           size_t* len) {
  char head[kJsonHeadMax];
  Writer hw(head, sizeof(head));
  hw.lit("{\"device_id\":\"");
  hw.put(device_id, id_len);
  hw.lit("\",\"seq\":");
  size_t head_len = 0;
  if (hw.finish(&head_len) != Status::kOk) return Status::kInvalidArgument;  // id > 64 chars
  return encode_json_head(head, head_len, m, drops_json, drops_len, buf, cap, len);
}

Status encode_json(const char* device_id, const Message& m, const DropCounters* drops, char* buf,
                   size_t cap, size_t* len) {
  if (!valid_device_id(device_id)) return Status::kInvalidArgument;
  char dj[128];
  const size_t dl = drops != nullptr ? render_drops_json(*drops, dj) : 0;
  return encode_json_trusted(device_id, std::strlen(device_id), m, drops != nullptr ? dj : nullptr,
                             dl, buf, cap, len);
}

Status encode_json_batch_head(const char* head, size_t head_len, const Message* const* msgs,
                              size_t n, const char* tail, size_t tail_len, char* buf, size_t cap,
                              size_t* len) {
  if (len != nullptr) *len = 0;
  if (cap > 0) buf[0] = '\0';
  if (n == 0 || n > kMaxSamplesPerMessage || msgs == nullptr) return Status::kInvalidArgument;
  for (size_t i = 0; i < n; ++i) {
    if (msgs[i] == nullptr || msgs[i]->seq != msgs[0]->seq + i) return Status::kInvalidArgument;
    const Status st = check_message(*msgs[i]);
    if (st != Status::kOk) return st;
  }
  Writer w(buf, cap);
  w.put(head, head_len);
  w.u64(msgs[0]->seq);
  w.lit(",\"samples\":[");
  for (size_t i = 0; i < n; ++i) {
    const Message& m = *msgs[i];
    if (i > 0) w.put(',');
    w.lit("{\"ts\":");
    w.ts(static_cast<uint64_t>(m.ts));
    w.lit(",\"readings\":{");
    for (uint8_t k = 0; k < m.count; ++k) {
      if (k > 0) w.put(',');
      w.name(kNameLits[static_cast<size_t>(m.readings[k].sensor)]);
      w.num(m.readings[k].value);
    }
    w.lit("}}");
  }
  w.put(']');
  if (tail != nullptr) w.put(tail, tail_len);
  w.put('}');
  return w.finish(len);
}

Status encode_json_batch(const char* device_id, const Message* const* msgs, size_t n,
                         const DropCounters* drops, char* buf, size_t cap, size_t* len) {
  char head[kJsonHeadMax];
  const size_t head_len = render_json_head(device_id, head);
  if (head_len == 0) {
    if (len != nullptr) *len = 0;
    if (cap > 0) buf[0] = '\0';
    return Status::kInvalidArgument;
  }
  char dj[128];
  const size_t dl = drops != nullptr ? render_drops_json(*drops, dj) : 0;
  return encode_json_batch_head(head, head_len, msgs, n, drops != nullptr ? dj : nullptr, dl, buf,
                                cap, len);
}

Status encode_senml(const char* device_id, const Message& m, const DropCounters* drops, char* buf,
                    size_t cap, size_t* len) {
  const Status st = check(device_id, m);
  if (st != Status::kOk) return st;
  Writer w(buf, cap);
  w.lit("[{\"bn\":\"");
  w.str(device_id);
  w.lit(":\",\"bt\":");
  w.u64(static_cast<uint64_t>(m.ts / 1000));
  const int64_t ms = m.ts % 1000;
  if (ms != 0) {
    w.put('.');
    w.put(static_cast<char>('0' + ms / 100));
    w.put(static_cast<char>('0' + ms / 10 % 10));
    w.put(static_cast<char>('0' + ms % 10));
  }
  for (uint8_t i = 0; i < m.count; ++i) {
    if (i == 0) {
      w.put(',');
    } else {
      w.lit("},{");
    }
    w.lit("\"n\":\"");
    const Sensor s = m.readings[i].sensor;
    w.str(kSensorNames[static_cast<size_t>(s)]);
    w.put('"');
    if (const char* u = kSenmlUnits[static_cast<size_t>(s)]) {
      w.lit(",\"u\":\"");
      w.str(u);
      w.put('"');
    }
    w.lit(",\"v\":");
    w.num(m.readings[i].value);
  }
  w.lit("},{\"n\":\"seq\",\"v\":");
  w.u64(m.seq);
  if (drops != nullptr) {
    const char* names[] = {"buffer", "outbox", "invalid", "clock", "storage"};
    const uint32_t vals[] = {drops->buffer, drops->outbox, drops->invalid, drops->clock,
                             drops->storage};
    for (size_t i = 0; i < 5; ++i) {
      w.lit("},{\"n\":\"drops_");
      w.str(names[i]);
      w.lit("\",\"v\":");
      w.u64(vals[i]);
    }
  }
  w.lit("}]");
  return w.finish(len);
}

Status encode(PayloadFormat fmt, const char* device_id, const Message& m,
              const DropCounters* drops, char* buf, size_t cap, size_t* len) {
  return fmt == PayloadFormat::kSenml ? encode_senml(device_id, m, drops, buf, cap, len)
                                      : encode_json(device_id, m, drops, buf, cap, len);
}

}  // namespace fw
