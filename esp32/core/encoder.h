// Payload encoders: the JSON contract of docs/CONTRACT.md, and SenML (RFC 8428) JSON.
// Both write into a caller-provided buffer; no heap, no printf on the hot path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "message.h"
#include "status.h"

namespace fw {

enum class PayloadFormat : uint8_t { kContractJson, kSenml };

/// True if id matches [A-Za-z0-9_.-]{1,64} (docs/CONTRACT.md), so it needs no escaping.
bool valid_device_id(const char* id);

/// Writes a JSON number for v into out (at least 24 bytes; bytes after the returned length
/// may be overwritten) and returns its length, 0 if v is not finite (nothing written).
/// Precision: 7 significant digits of the float's exact binary value, rounded half away from
/// zero, trailing zeros removed: the same decimal value as printf("%.7g") except at exact
/// ties (half-even there), so the relative error is <= 5e-7 and every decimal of at most 6
/// significant digits (e.g. 70.394, 0.00479) read into a float prints back unchanged.
/// Notation: plain decimal for 1e-5 <= |v| < 1e7 (fast path: no printf, no division by a
/// variable), the rounded integer for 1e7 <= |v| < 1e9, printf "%.7g" exponent notation
/// otherwise ("1e-05"). -0 prints "0". The contract's value ranges (docs/CONTRACT.md: degrees,
/// g, %, lux <= 1e5, ppm <= 4e4, kg/kg >= 1e-5) all take the fast path.
size_t format_number(float v, char* out);
/// Writes the decimal digits of v into out (at least 20 bytes) and returns their count.
size_t format_u64(uint64_t v, char* out);

/// Longest head rendered by render_json_head, with its NUL.
constexpr size_t kJsonHeadMax = 14 + 64 + 8 + 1;
/// Renders the part of every contract JSON payload that depends only on the device,
/// `{"device_id":"<id>","seq":`, into out (at least kJsonHeadMax bytes). Returns its length,
/// 0 if device_id is not valid (valid_device_id()).
size_t render_json_head(const char* device_id, char* out);
/// Fastest contract JSON encoder, for callers that cache the head (render_json_head) and the
/// drops member (render_drops_json; tail may be nullptr for none): writes the same text as
/// encode_json in one pass, without per-write bounds checks when cap holds the worst case
/// for m (about head_len + tail_len + 62 + 56 per reading bytes), checked writes otherwise.
/// Errors: kInvalidArgument (no readings, ts < 2020-01-01, bad sensor), kNotFinite,
/// kBufferTooSmall (buf[0] = NUL, *len = 0).
Status encode_json_head(const char* head, size_t head_len, const Message& m, const char* tail,
                        size_t tail_len, char* buf, size_t cap, size_t* len);

/// Encodes m as the contract JSON object
///   {"device_id":..,"seq":..,"ts":<epoch ms>,"readings":{..},"drops":{..}}
/// into buf[0..cap) with a terminating NUL; *len gets the length without the NUL.
/// drops may be nullptr (then no "drops" member). Errors: kInvalidArgument (bad device id,
/// no readings, ts < 2020-01-01 i.e. not an epoch-ms stamp), kNotFinite (a reading is
/// NaN/inf), kBufferTooSmall (buf too small; contents undefined).
Status encode_json(const char* device_id, const Message& m, const DropCounters* drops, char* buf,
                   size_t cap, size_t* len);

/// Encodes m as a SenML pack (RFC 8428 JSON): the first record carries bn "<device_id>:" and
/// bt (epoch seconds, ms resolution); one record per reading with n = contract name, u = the
/// SenML unit when one fits, v = value; then {"n":"seq","v":seq} and, when drops is given,
/// {"n":"drops_<name>","v":count} records. Same errors as encode_json.
Status encode_senml(const char* device_id, const Message& m, const DropCounters* drops, char* buf,
                    size_t cap, size_t* len);

/// Renders the "drops" member (`,"drops":{...}`) into out (at least 128 bytes); returns the
/// length. Used by callers that cache it between payloads (drops change rarely).
size_t render_drops_json(const DropCounters& d, char* out);

/// Fast path of encode_json for callers that validated device_id once (Node::init) and cache
/// the rendered drops member: no per-message id validation, drops copied verbatim
/// (drops_json may be nullptr / drops_len 0 for none). Same errors as encode_json except
/// that an invalid id is not detected.
Status encode_json_trusted(const char* device_id, size_t id_len, const Message& m,
                           const char* drops_json, size_t drops_len, char* buf, size_t cap,
                           size_t* len);

/// Most samples in one batch payload (docs/CONTRACT.md "Batches"; the bridge's MAX_SAMPLES).
constexpr size_t kMaxSamplesPerMessage = 100;

/// Bytes a contract JSON batch of n samples (each of at most kMaxReadings readings) needs at
/// most, with the drops member and the NUL: size a payload buffer with it so that
/// encode_json_batch never returns kBufferTooSmall. 250 + 300 * n (30,250 for n = 100).
constexpr size_t json_batch_bound(size_t n) { return 250 + 300 * n; }

/// Encodes msgs[0..n) (one device's samples, seqs consecutive: msgs[i]->seq ==
/// msgs[0]->seq + i) as one batch payload of docs/CONTRACT.md "Batches":
///   {"device_id":..,"seq":<msgs[0]->seq>,"samples":[{"ts":..,"readings":{..}},..],"drops":{..}}
/// head is render_json_head()'s text, tail the render_drops_json() member (nullptr: none).
/// The device's seq counter has advanced by one per sample, so the next payload starts at
/// msgs[0]->seq + n. Errors: kInvalidArgument (n == 0 or n > kMaxSamplesPerMessage, seqs not
/// consecutive, a message without readings or not stamped, bad sensor), kNotFinite,
/// kBufferTooSmall (buf[0] = NUL, *len = 0).
Status encode_json_batch_head(const char* head, size_t head_len, const Message* const* msgs,
                              size_t n, const char* tail, size_t tail_len, char* buf, size_t cap,
                              size_t* len);
/// encode_json_batch_head for a device id (validated) and drop counters (nullptr: none).
Status encode_json_batch(const char* device_id, const Message* const* msgs, size_t n,
                         const DropCounters* drops, char* buf, size_t cap, size_t* len);

/// Dispatches on fmt.
Status encode(PayloadFormat fmt, const char* device_id, const Message& m,
              const DropCounters* drops, char* buf, size_t cap, size_t* len);

/// 2020-01-01T00:00:00Z in epoch ms: the bridge rejects anything earlier.
constexpr int64_t kMinEpochMs = 1577836800000LL;

}  // namespace fw
