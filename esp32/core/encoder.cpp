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

const double kPow10[] = {1e0, 1e1, 1e2, 1e3, 1e4,  1e5,  1e6,
                         1e7, 1e8, 1e9, 1e10, 1e11, 1e12};
const uint64_t kPow10U[] = {1ULL,         10ULL,         100ULL,        1000ULL,
                            10000ULL,     100000ULL,     1000000ULL,    10000000ULL,
                            100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
                            1000000000000ULL};

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
const char kDigits2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";
}  // namespace

size_t format_u64(uint64_t v, char* out) {
  static const uint64_t kPow[] = {10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
                                  10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
                                  100000000000ULL, 1000000000000ULL, 10000000000000ULL,
                                  100000000000000ULL, 1000000000000000ULL,
                                  10000000000000000ULL, 100000000000000000ULL,
                                  1000000000000000000ULL, 10000000000000000000ULL};
  size_t n = 1;
  while (n < 20 && v >= kPow[n - 1]) ++n;  // digit count
  char* p = out + n;
  while (v >= 100) {  // two digits per division
    const unsigned r = static_cast<unsigned>(v % 100);
    v /= 100;
    p -= 2;
    p[0] = kDigits2[2 * r];
    p[1] = kDigits2[2 * r + 1];
  }
  if (v >= 10) {
    p -= 2;
    p[0] = kDigits2[2 * v];
    p[1] = kDigits2[2 * v + 1];
  } else {
    *--p = static_cast<char>('0' + v);
  }
  return n;
}

size_t format_number(float vf, char* out) {
  if (!std::isfinite(vf)) return 0;
  double v = vf;
  if (v == 0.0) {
    out[0] = '0';
    return 1;
  }
  size_t n = 0;
  if (v < 0) {
    out[n++] = '-';
    v = -v;
  }
  if (v < 1e-5 || v >= 1e9) {
    // rare: exponent notation via snprintf ("1.5e-06" is a valid JSON number)
    const int k = std::snprintf(out + n, 24, "%.7g", v);
    return k > 0 ? n + static_cast<size_t>(k) : 0;
  }
  // decimals so that 7 significant digits remain: 6 - floor(log10(v)), clamped to >= 0
  int dec;
  if (v >= 1.0) {
    int e = 0;
    while (e < 8 && v >= kPow10[e + 1]) ++e;
    dec = e >= 6 ? 0 : 6 - e;
  } else {
    int neg = 1;  // v in [10^-neg, 10^-(neg-1))
    while (neg < 5 && v * kPow10[neg] < 1.0) ++neg;
    dec = 6 + neg;
  }
  const uint64_t scaled = static_cast<uint64_t>(v * kPow10[dec] + 0.5);
  const uint64_t p10 = kPow10U[dec];
  const uint64_t ip = scaled / p10;
  uint64_t fp = scaled % p10;
  n += format_u64(ip, out + n);
  if (fp != 0) {
    int digits = dec;
    while (fp % 10 == 0) {  // trim trailing zeros
      fp /= 10;
      --digits;
    }
    out[n++] = '.';
    for (int i = digits - 1; i >= 0; --i) {
      out[n + static_cast<size_t>(i)] = static_cast<char>('0' + fp % 10);
      fp /= 10;
    }
    n += static_cast<size_t>(digits);
  }
  return n;
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

Status encode_json_trusted(const char* device_id, size_t id_len, const Message& m,
                           const char* drops_json, size_t drops_len, char* buf, size_t cap,
                           size_t* len) {
  const Status st = check_message(m);
  if (st != Status::kOk) return st;
  Writer w(buf, cap);
  w.lit("{\"device_id\":\"");
  w.put(device_id, id_len);
  w.lit("\",\"seq\":");
  w.u64(m.seq);
  w.lit(",\"ts\":");
  w.u64(static_cast<uint64_t>(m.ts));
  w.lit(",\"readings\":{");
  for (uint8_t i = 0; i < m.count; ++i) {
    if (i > 0) w.put(',');
    w.put('"');
    w.str(kSensorNames[static_cast<size_t>(m.readings[i].sensor)]);
    w.lit("\":");
    w.num(m.readings[i].value);
  }
  w.put('}');
  if (drops_json != nullptr) w.put(drops_json, drops_len);
  w.put('}');
  return w.finish(len);
}

Status encode_json(const char* device_id, const Message& m, const DropCounters* drops, char* buf,
                   size_t cap, size_t* len) {
  if (!valid_device_id(device_id)) return Status::kInvalidArgument;
  char dj[128];
  const size_t dl = drops != nullptr ? render_drops_json(*drops, dj) : 0;
  return encode_json_trusted(device_id, std::strlen(device_id), m, drops != nullptr ? dj : nullptr,
                             dl, buf, cap, len);
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
