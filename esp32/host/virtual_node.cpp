// Virtual ESP32 node: plays a project data file as its sensor through the firmware core and
// publishes to an MQTT broker exactly as a board would (topic sensors/{device_id}/telemetry,
// QoS 1, store-and-forward outbox, persisted seq). See esp32/README.md "Virtual node".
//
//   virtual_node --profile femto-b1_1 [--device ID] [--host H] [--port P] [--data-dir DIR]
//                [--speedup X] [--limit N] [--outage-at N --outage-seconds S]
//                [--seq-file PATH] [--client-id ID] [--max-inflight N] [--format json|senml]
//                [--clock-late N] [--now-ms T] [--pace-origin-ms T] [--quiet]
//                [--samples-per-message N] [--backpressure]
//                [--username U --password-file F] [--cafile CA.crt]
//
// Credential: the project's broker refuses anonymous clients; --username is the device id
// and --password-file the file `iotflink device add ID` made (the password stays
// off the command line). --cafile turns on MQTT over TLS, verifying the broker against it.
//
// Batches (--samples-per-message N, 1..100, default 1): N consecutive samples go in one MQTT
// message (docs/CONTRACT.md "Batches"), acknowledged as a unit; a partial batch is sent at the
// end of the data. --max-inflight counts MQTT messages.
//
// Pacing (--speedup X > 0): by default a node paces by its own data time (uptime). With
// --pace-origin-ms T a reading of true event time t (epoch ms, after the replay shift) is due
// max(0, t - T) / X after start, so nodes started together with the same T, X and --now-ms
// (the wall time the replay shift is computed from) share one event-time clock, as a real
// fleet shares the wall clock; readings before T are due at once.
//
// Backpressure (--backpressure, with --speedup X > 0): pacing says when a reading is due at the
// earliest; a node that falls behind (readings before --pace-origin-ms are all due at once, or
// data due faster than the broker acknowledges) waits while its outbox is half full, as at
// speedup 0, instead of playing on into a full outbox that drops the oldest. A replay's own
// schedule then loses nothing; while offline (--outage-at) the outbox still fills and overflows
// as on a board. Without it a paced node samples on schedule whatever the link does, as a board
// does (the outbox drops the oldest when the broker falls behind, counted in drops.outbox).
//
// At exit it prints one JSON line to stdout (fields: esp32/README.md "Virtual node"):
//   {"device_id":..,"published":N,"dropped":N,"first_seq":..,"last_seq":..,
//    "seq_begin":..,"seq_end":..,"acked_ranges":[[lo,hi],..],...}
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "../core/node.h"
#include "../core/profiles.h"
#include "data_source.h"
#include "file_seq_storage.h"
#include "fleet.h"

namespace {

using Clock = std::chrono::steady_clock;
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string device;
  std::string profile;
  std::string data_dir = "data";
  double speedup = 1.0;
  long limit = -1;
  long outage_at = -1;
  double outage_seconds = 0;
  std::string seq_file;
  std::string client_id;
  std::string username;       // MQTT credential (the broker refuses anonymous clients)
  std::string password_file;  // file whose first line is the password (kept off the command line)
  std::string cafile;         // CA certificate: MQTT over TLS, broker certificate verified
  int max_inflight = 20;
  long seq_block = 64;          // seq numbers reserved per seq-file write (the board's NVS block)
  int samples_per_message = 1;  // samples per MQTT message (1 = single readings, >1 = batches)
  fw::PayloadFormat format = fw::PayloadFormat::kContractJson;
  long clock_late = 0;
  int64_t now_ms = -1;          // wall epoch ms for the replay shift; -1 = the real clock
  int64_t pace_origin_ms = -1;  // shared event-time clock origin (epoch ms); -1 = own uptime
  bool quiet = false;
  bool backpressure = false;  // speedup > 0: wait while the outbox is half full (see above)
  // several devices in one process (see above)
  long devices = 0;              // --devices N: ids {device}-0000 ..
  std::string devices_file;      // --devices-file F: DEVICE_ID [PASSWORD_FILE [SEQ_FILE]] per line
  std::string password_dir;      // --password-dir DIR: DIR/{id}.password per device
  std::string seq_dir;           // --seq-dir DIR: DIR/{id}.seq per device
  bool multi() const { return devices > 0 || !devices_file.empty(); }
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "virtual_node: %s\n"
               "usage: virtual_node --profile NAME [--device ID] [--host H] [--port P]\n"
               "  [--data-dir DIR] [--speedup X (0 = as fast as acks allow)] [--limit N]\n"
               "  [--outage-at N --outage-seconds S] [--seq-file PATH] [--client-id ID]\n"
               "  [--username U --password-file F] [--cafile CA.crt]\n"
               "  [--max-inflight N] [--format json|senml] [--clock-late N]\n"
               "  [--now-ms T] [--pace-origin-ms T] [--quiet] [--samples-per-message N]\n"
               "  [--backpressure] [--seq-block N]\n"
               "  several devices: --devices N [--device PREFIX] | --devices-file F,\n"
               "  [--password-dir DIR] [--seq-dir DIR]\n"
               "profiles: nab-machine, femto-b1_1, occupancy-office\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--host") o.host = val();
    else if (a == "--port") o.port = std::atoi(val().c_str());
    else if (a == "--device") o.device = val();
    else if (a == "--profile") o.profile = val();
    else if (a == "--data-dir") o.data_dir = val();
    else if (a == "--speedup") o.speedup = std::atof(val().c_str());
    else if (a == "--limit") o.limit = std::atol(val().c_str());
    else if (a == "--outage-at") o.outage_at = std::atol(val().c_str());
    else if (a == "--outage-seconds") o.outage_seconds = std::atof(val().c_str());
    else if (a == "--seq-file") o.seq_file = val();
    else if (a == "--client-id") o.client_id = val();
    else if (a == "--username") o.username = val();
    else if (a == "--password-file") o.password_file = val();
    else if (a == "--cafile") o.cafile = val();
    else if (a == "--max-inflight") o.max_inflight = std::atoi(val().c_str());
    else if (a == "--seq-block") o.seq_block = std::atol(val().c_str());
    else if (a == "--samples-per-message") o.samples_per_message = std::atoi(val().c_str());
    else if (a == "--clock-late") o.clock_late = std::atol(val().c_str());
    else if (a == "--now-ms") o.now_ms = std::atoll(val().c_str());
    else if (a == "--pace-origin-ms") o.pace_origin_ms = std::atoll(val().c_str());
    else if (a == "--devices") o.devices = std::atol(val().c_str());
    else if (a == "--devices-file") o.devices_file = val();
    else if (a == "--password-dir") o.password_dir = val();
    else if (a == "--seq-dir") o.seq_dir = val();
    else if (a == "--quiet") o.quiet = true;
    else if (a == "--backpressure") o.backpressure = true;
    else if (a == "--format") {
      const std::string f = val();
      if (f == "json") o.format = fw::PayloadFormat::kContractJson;
      else if (f == "senml") o.format = fw::PayloadFormat::kSenml;
      else usage("--format must be json or senml");
    } else if (a == "-h" || a == "--help") usage("help");
    else usage(("unknown option " + a).c_str());
  }
  if (o.profile.empty()) o.profile = o.device;
  if (o.device.empty()) o.device = o.profile;
  if (o.profile.empty()) usage("--profile or --device is required");
  if (o.speedup < 0) usage("--speedup must be >= 0");
  if (o.max_inflight < 1) usage("--max-inflight must be >= 1");
  if (o.seq_block < 1 || o.seq_block > 1000000) usage("--seq-block must be 1..1000000");
  if (o.samples_per_message < 1 || o.samples_per_message > static_cast<int>(fw::kMaxSamplesPerMessage)) {
    usage("--samples-per-message must be 1..100");
  }
  if (o.samples_per_message > 1 && o.format != fw::PayloadFormat::kContractJson) {
    usage("--samples-per-message > 1 needs --format json");
  }
  if (o.pace_origin_ms >= 0 && o.speedup <= 0) usage("--pace-origin-ms needs --speedup > 0");
  if (o.backpressure && o.speedup <= 0) usage("--backpressure needs --speedup > 0 (speedup 0 always waits)");
  if (o.password_file.size() && o.username.empty()) usage("--password-file needs --username");
  if (o.outage_at >= 0 && o.outage_seconds <= 0) usage("--outage-at needs --outage-seconds > 0");
  if (o.devices < 0) usage("--devices must be >= 1");
  if (o.devices > 0 && !o.devices_file.empty()) usage("give --devices or --devices-file, not both");
  if (o.multi() && (!o.seq_file.empty() || !o.client_id.empty() || !o.username.empty() ||
                    !o.password_file.empty())) {
    usage("with several devices, --seq-file/--client-id/--username/--password-file are per device "
          "(--seq-dir, --password-dir or the devices file; the username is the device id)");
  }
  if (!o.multi() && (!o.password_dir.empty() || !o.seq_dir.empty())) {
    usage("--password-dir/--seq-dir need --devices or --devices-file");
  }
  return o;
}

int64_t wall_epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// What every device of the process shares: options, the data rows, the clocks, epoll.
struct Shared {
  const Options* opt = nullptr;
  const fw::Profile* prof = nullptr;
  std::vector<fw::DataRow> rows;
  int64_t shift = 0;
  Clock::time_point t0;
  int64_t t0_epoch_ms = 0;
  size_t high_water = 0;
  bool backpressure = false;
  int epfd = -1;
};
Shared g;

int64_t us_since_start(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t - g.t0).count();
}

/// Where a device is in its run (each row: pace, backpressure, outage, submit).
enum class Phase : uint8_t { kConnecting, kPlaying, kGoingOffline, kOutageTail, kFlushing, kDone };

/// One simulated device: its firmware core, its MQTT connection (the single node's Link) and
/// where it is in the data. Allocated once at start; nothing here allocates per sample beyond
/// what the single node does (the in-flight map and the acked list).
struct Device {
  size_t index = 0;
  std::string id, topic, client_id, seq_file, username, password_file;
  std::unique_ptr<fw::FileSeqStorage> storage;
  fw::Node<> node;  // the board's default configuration
  mosquitto* mosq = nullptr;
  int fd = -1;         // socket registered with epoll (-1: none)
  bool want_out = false;

  // --- MQTT link (as a board's)
  bool want_online = true;  // false during a simulated outage
  bool socket_open = false; // mosquitto_connect/reconnect succeeded, not yet disconnected
  bool ready = false;       // CONNACK accepted
  int inflight_limit = 20;
  int receive_max = 65535;
  /// MQTT message id -> (first seq, samples) of the payload in flight under it
  std::unordered_map<int, std::pair<uint64_t, size_t>> mid_to_seq;
  bool flush = false;  // end of data: send a partial batch too
  uint64_t sends = 0, rejected = 0, connects = 0, no_subscribers = 0;
  /// seqs the broker accepted (PUBACK reason < 0x80), each once
  std::vector<uint64_t> acked;
  Clock::time_point next_retry = Clock::now();
  double backoff_s = 0.5;

  // --- player
  Phase phase = Phase::kConnecting;
  Clock::time_point phase_deadline;  // kConnecting / kGoingOffline: give up waiting then
  size_t row = 0;
  int row_stage = 0;  // 0: new row, 1: paced, 2: backpressure done
  Clock::time_point row_due;
  bool stalling = false;
  Clock::time_point stall_start;
  Clock::duration waited{0};
  int64_t mono = 0, pace = 0;
  bool offline = false;
  int64_t outage_end_mono = 0;
  Clock::time_point outage_end_wall;
  size_t processed = 0;
  uint64_t seq_begin = 0;
  Clock::time_point last_progress;
  size_t last_published = 0;
  Clock::time_point done_at;

  void log(const char* fmt, ...) const __attribute__((format(printf, 2, 3))) {
    if (g.opt->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "[vnode %s] ", id.c_str());
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
  }

  uint64_t published() {
    std::sort(acked.begin(), acked.end());
    acked.erase(std::unique(acked.begin(), acked.end()), acked.end());
    return acked.size();
  }

  static void on_connect(mosquitto*, void* ctx, int rc, int, const mosquitto_property* props) {
    auto* d = static_cast<Device*>(ctx);
    if (rc != 0) {
      d->log("connect refused: %s", mosquitto_reason_string(rc));
      return;
    }
    uint16_t rm = 0;
    d->receive_max =
        mosquitto_property_read_int16(props, MQTT_PROP_RECEIVE_MAXIMUM, &rm, false) ? rm : 65535;
    d->inflight_limit = std::min(g.opt->max_inflight, d->receive_max);
    d->ready = true;
    d->backoff_s = 0.5;
    ++d->connects;
    d->log("connected (broker receive-maximum %d, in-flight limit %d)", d->receive_max,
           d->inflight_limit);
  }
  static void on_disconnect(mosquitto*, void* ctx, int rc, const mosquitto_property*) {
    auto* d = static_cast<Device*>(ctx);
    d->ready = false;
    d->socket_open = false;
    d->mid_to_seq.clear();
    d->node.outbox().on_disconnect();  // unacked messages will be sent again, in order
    if (rc != 0) d->log("connection lost (%s)", mosquitto_strerror(rc));
  }
  static void on_publish(mosquitto*, void* ctx, int mid, int reason, const mosquitto_property*) {
    auto* d = static_cast<Device*>(ctx);
    auto it = d->mid_to_seq.find(mid);
    if (it == d->mid_to_seq.end()) return;
    const uint64_t seq = it->second.first;
    const size_t n = it->second.second;
    d->mid_to_seq.erase(it);
    // the broker has it (or refused it for good): its samples leave the outbox either way, as
    // a unit, even when the outbox already dropped some (then ack_batch() says kNotFound)
    d->node.outbox().ack_batch(seq, n);
    if (reason >= 0x80) {  // refused: not published, counted in dropped (never retried)
      ++d->rejected;
      d->log("PUBACK for seq %llu (+%zu): reason 0x%02x", static_cast<unsigned long long>(seq),
             n - 1, reason);
      return;
    }
    if (reason == 0x10) ++d->no_subscribers;  // accepted, but nobody subscribed (MQTT v5)
    for (size_t i = 0; i < n; ++i) d->acked.push_back(seq + i);
  }

  /// Keeps the epoll registration in step with libmosquitto's socket and its wish to write.
  void sync_fd() {
    if (socket_open && mosquitto_socket(mosq) < 0) on_disconnect(mosq, this, MOSQ_ERR_SUCCESS, nullptr);
    const int s = socket_open ? mosquitto_socket(mosq) : -1;
    const bool out = s >= 0 && mosquitto_want_write(mosq);
    if (s != fd) {
      // a closed socket left epoll by itself; a descriptor still open is removed explicitly
      if (fd >= 0) epoll_ctl(g.epfd, EPOLL_CTL_DEL, fd, nullptr);
      fd = -1;
      if (s >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
        ev.data.ptr = this;
        if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, s, &ev) == 0 ||
            (errno == EEXIST && epoll_ctl(g.epfd, EPOLL_CTL_MOD, s, &ev) == 0)) {
          fd = s;
          want_out = out;
        }
      }
      return;
    }
    if (fd >= 0 && out != want_out) {
      epoll_event ev{};
      ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
      ev.data.ptr = this;
      epoll_ctl(g.epfd, EPOLL_CTL_MOD, fd, &ev);
      want_out = out;
    }
  }

  void failed(int rc) {  // a loop call failed: the connection is gone, retry with backoff
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && socket_open) {
      on_disconnect(mosq, this, rc, nullptr);
      next_retry = Clock::now() + std::chrono::milliseconds(static_cast<int>(backoff_s * 1000));
      backoff_s = std::min(backoff_s * 2, 8.0);
    }
  }

  /// Opens the connection when wanted and due (exponential backoff 0.5 s .. 8 s).
  void maybe_connect(Clock::time_point now) {
    if (!want_online || socket_open || now < next_retry) return;
    const int rc = connects == 0 && sends == 0
                       ? mosquitto_connect(mosq, g.opt->host.c_str(), g.opt->port, 30)
                       : mosquitto_reconnect(mosq);
    if (rc == MOSQ_ERR_SUCCESS) {
      socket_open = true;
    } else {
      log("connect to %s:%d failed: %s (retry in %.1f s)", g.opt->host.c_str(), g.opt->port,
          mosquitto_strerror(rc), backoff_s);
      next_retry = Clock::now() + std::chrono::milliseconds(static_cast<int>(backoff_s * 1000));
      backoff_s = std::min(backoff_s * 2, 8.0);
    }
    sync_fd();
  }

  /// Sends due payloads (single readings or batches) while the in-flight limit (MQTT
  /// messages awaiting PUBACK) allows.
  void pump() {
    static char buf[fw::json_batch_bound(fw::kMaxSamplesPerMessage)];  // one event loop thread
    while (ready && static_cast<int>(mid_to_seq.size()) < inflight_limit) {
      size_t len = 0, n = 0;
      uint64_t seq = 0;
      const fw::Status st = node.next_payload(flush, buf, sizeof(buf), &len, &seq, &n);
      if (st == fw::Status::kEmpty) break;
      if (st != fw::Status::kOk) {  // cannot happen for validated readings; never loop on it
        log("encode failed for seq %llu (+%zu): %s", static_cast<unsigned long long>(seq), n - 1,
            fw::status_name(st));
        node.outbox().mark_sent(n);
        node.outbox().ack_batch(seq, n);
        continue;
      }
      int mid = 0;
      const int rc = mosquitto_publish_v5(mosq, &mid, topic.c_str(), static_cast<int>(len), buf,
                                          1, false, nullptr);
      if (rc != MOSQ_ERR_SUCCESS) {
        log("publish failed: %s", mosquitto_strerror(rc));
        break;
      }
      mid_to_seq[mid] = {seq, n};
      node.outbox().mark_sent(n);
      ++sends;
    }
    sync_fd();
  }

  /// Socket readable / writable (epoll), or the periodic keepalive check.
  void on_io(uint32_t events) {
    if (!socket_open) return;
    int rc = MOSQ_ERR_SUCCESS;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) rc = mosquitto_loop_read(mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && socket_open && (events & EPOLLOUT)) rc = mosquitto_loop_write(mosq, 1);
    failed(rc);
    if (socket_open) pump();
    sync_fd();
  }
  void misc() {
    if (!socket_open) return;
    failed(mosquitto_loop_misc(mosq));
    sync_fd();
  }

  /// Sends DISCONNECT without waiting: the event loop writes what is left and sees the broker
  /// close the connection (on_disconnect), so one device never holds up the others.
  void disconnect() {
    ready = false;
    if (socket_open) {
      mosquitto_disconnect(mosq);
      if (socket_open && mosquitto_socket(mosq) >= 0 && mosquitto_want_write(mosq)) mosquitto_loop_write(mosq, 1);
      if (mosquitto_socket(mosq) < 0) socket_open = false;
    }
    sync_fd();
  }

  /// Simulated outage start, after its wait for outstanding PUBACKs: disconnects.
  void disconnect_for_outage() {
    want_online = false;
    disconnect();
    log("outage: offline");
  }
};

constexpr auto kStallLimit = std::chrono::seconds(30);  // backpressure: wait for a connection
constexpr auto kServicePeriod = std::chrono::milliseconds(100);

/// Moves device d on as far as it can at `now`; returns the time it next wants to run (or
/// Clock::time_point::max() when only network events can move it).
Clock::time_point advance(Device& d, Clock::time_point now) {
  const Options& opt = *g.opt;
  d.maybe_connect(now);
  Clock::time_point wake = Clock::time_point::max();
  auto retry_wake = [&]() {
    if (d.want_online && !d.socket_open) wake = std::min(wake, std::max(d.next_retry, now + std::chrono::milliseconds(10)));
  };
  for (;;) {
    switch (d.phase) {
      case Phase::kConnecting:  // wait (<= 5 s) for the first CONNACK so speedup 0 does not start offline
        if (d.ready || g_stop || now >= d.phase_deadline) {
          d.phase = Phase::kPlaying;
          continue;
        }
        wake = std::min(wake, d.phase_deadline);
        retry_wake();
        return wake;

      case Phase::kPlaying: {
        if (d.row >= g.rows.size() || g_stop) {  // end of data: finish a pending outage, then flush
          d.flush = true;
          d.phase = d.offline ? Phase::kOutageTail : Phase::kFlushing;
          if (!d.offline) {
            d.last_progress = now;
            d.last_published = d.acked.size();
            if (!d.node.clock().is_set() && d.node.held() > 0) {
              d.log("clock never set: %zu readings held and not sent", d.node.held());
            }
          }
          if (d.socket_open) d.pump();
          continue;
        }
        const fw::DataRow& row = g.rows[d.row];
        if (d.row_stage == 0) {
          d.mono = std::max(d.mono, row.event_ms - g.rows[0].event_ms);
          if (opt.speedup > 0) {  // pace by event time
            d.pace = opt.pace_origin_ms >= 0 ? std::max(d.pace, row.event_ms + g.shift - opt.pace_origin_ms) : d.mono;
            d.row_due = g.t0 + std::chrono::microseconds(fw::due_after_start_us(d.pace, opt.speedup));
          } else {
            d.row_due = now;
          }
          d.row_stage = 1;
        }
        if (d.row_stage == 1) {
          if (now < d.row_due) {
            wake = std::min(wake, d.row_due);
            retry_wake();
            return wake;
          }
          d.row_stage = 2;
          d.stalling = false;
        }
        if (d.row_stage == 2 && g.backpressure) {  // let the outbox drain while online
          // data time stands still while we wait, so waiting loses nothing (also while
          // reconnecting, but at most kStallLimit without a connection)
          if (!d.stalling) {
            d.stalling = true;
            d.stall_start = now;
          }
          if (!d.offline && d.node.outbox().size() >= g.high_water &&
              (d.ready || now - d.stall_start <= kStallLimit)) {
            wake = std::min(wake, now + kServicePeriod);
            retry_wake();
            return wake;
          }
          d.waited += now - d.stall_start;
          d.stalling = false;
        }
        d.row_stage = 3;
        if (opt.outage_at >= 0 && static_cast<long>(d.row) == opt.outage_at && !d.offline) {
          d.phase = Phase::kGoingOffline;  // wait (<= 10 s) for outstanding PUBACKs first
          d.phase_deadline = now + std::chrono::seconds(10);
          continue;
        }
        if (d.offline && d.mono >= d.outage_end_mono && now >= d.outage_end_wall) {
          d.offline = false;
          d.want_online = true;
          d.log("outage over: reconnecting, %zu queued", d.node.outbox().size());
          d.maybe_connect(now);
        }
        // SNTP: the clock is set after --clock-late readings; data time is the true wall time
        const int64_t truth = row.event_ms + g.shift;
        if (static_cast<long>(d.row) >= opt.clock_late) {
          int64_t now_ts = 0;
          if (d.node.clock().to_epoch(d.mono, &now_ts) != fw::Status::kOk || now_ts != truth) {
            d.node.set_clock(d.mono, truth);
          }
        }
        fw::Sample s;
        s.mono_ms = d.mono;
        s.count = row.count;
        for (uint8_t k = 0; k < row.count; ++k) s.readings[k] = row.readings[k];
        d.node.submit(s);
        d.node.process();
        ++d.processed;
        ++d.row;
        d.row_stage = 0;
        if (d.socket_open) d.pump();
        continue;
      }

      case Phase::kGoingOffline:
        if (d.node.outbox().in_flight() > 0 && now < d.phase_deadline && !g_stop) {
          wake = std::min(wake, now + kServicePeriod);
          retry_wake();
          return wake;
        }
        d.disconnect_for_outage();
        d.offline = true;
        d.outage_end_mono = d.mono + static_cast<int64_t>(opt.outage_seconds * 1000.0);
        d.outage_end_wall = now + std::chrono::milliseconds(static_cast<int64_t>(
                                      opt.speedup > 0 ? opt.outage_seconds * 1000.0 / opt.speedup : 0));
        d.phase = Phase::kPlaying;  // the row the outage started before is played offline
        continue;

      case Phase::kOutageTail:
        if (!g_stop && now < d.outage_end_wall) return std::min(wake, d.outage_end_wall);
        d.offline = false;
        d.want_online = true;
        d.log("outage over: reconnecting, %zu queued", d.node.outbox().size());
        d.maybe_connect(now);
        if (!d.node.clock().is_set() && d.node.held() > 0) {
          d.log("clock never set: %zu readings held and not sent", d.node.held());
        }
        d.phase = Phase::kFlushing;
        d.last_progress = now;
        d.last_published = d.acked.size();
        continue;

      case Phase::kFlushing:  // flush the outbox; give up after 30 s without progress
        if (d.acked.size() != d.last_published) {
          d.last_published = d.acked.size();
          d.last_progress = now;
        }
        if (!d.node.outbox().empty() && now - d.last_progress < std::chrono::seconds(30) &&
            !(g_stop && now - d.last_progress > std::chrono::seconds(3))) {
          wake = std::min(wake, now + kServicePeriod);
          retry_wake();
          return wake;
        }
        d.want_online = false;
        d.disconnect();  // mosquitto_destroy closes the socket if the broker has not yet
        d.done_at = Clock::now();
        d.phase = Phase::kDone;
        return Clock::time_point::max();

      case Phase::kDone:
        return Clock::time_point::max();
    }
  }
}

/// The device's JSON summary line (fields: esp32/README.md "Virtual node"); returns its unsent count.
uint64_t print_summary(Device& d) {
  const fw::DropCounters dr = d.node.drops();
  const uint64_t unsent = d.node.outbox().size() + d.node.held();
  // messages = seqs handed out this run; each either reached the broker or is dropped
  const uint64_t seq_end = d.node.next_seq();
  const uint64_t messages = seq_end - d.seq_begin;
  const uint64_t published = d.published();
  const uint64_t dropped = uint64_t{dr.buffer} + dr.storage + (messages - published);
  std::string ranges;  // acked seqs as [lo,hi] ranges, ascending
  for (size_t i = 0; i < d.acked.size();) {
    size_t j = i;
    while (j + 1 < d.acked.size() && d.acked[j + 1] == d.acked[j] + 1) ++j;
    ranges += (ranges.empty() ? "[" : ",[") + std::to_string(d.acked[i]) + "," +
              std::to_string(d.acked[j]) + "]";
    i = j + 1;
  }
  const bool have = published > 0;
  const auto& ev = d.node.events();
  std::printf(
      "{\"device_id\":\"%s\",\"published\":%llu,\"dropped\":%llu,\"first_seq\":%s,"
      "\"last_seq\":%s,\"seq_begin\":%llu,\"seq_end\":%llu,\"acked_ranges\":[%s],"
      "\"messages\":%llu,\"readings\":%zu,\"invalid\":%u,\"unsent\":%llu,"
      "\"drops\":{\"buffer\":%u,\"outbox\":%u,\"clock\":%u,\"storage\":%u},"
      "\"sends\":%llu,\"rejected\":%llu,\"no_subscribers\":%llu,\"connects\":%llu,"
      "\"clock_jumps\":%u,\"spikes\":%u,\"sequence_matches\":%u,\"z_anomalies\":%u,"
      "\"samples_per_message\":%d,\"backpressure_s\":%.3f,\"wall_s\":%.3f,\"start_ms\":%lld}\n",
      d.id.c_str(), static_cast<unsigned long long>(published),
      static_cast<unsigned long long>(dropped),
      have ? std::to_string(d.acked.front()).c_str() : "null",
      have ? std::to_string(d.acked.back()).c_str() : "null",
      static_cast<unsigned long long>(d.seq_begin), static_cast<unsigned long long>(seq_end),
      ranges.c_str(), static_cast<unsigned long long>(messages), d.processed, dr.invalid,
      static_cast<unsigned long long>(unsent), dr.buffer, dr.outbox, dr.clock, dr.storage,
      static_cast<unsigned long long>(d.sends), static_cast<unsigned long long>(d.rejected),
      static_cast<unsigned long long>(d.no_subscribers),
      static_cast<unsigned long long>(d.connects), d.node.clock().jumps(), ev.spikes,
      ev.sequence_matches, ev.z_anomalies, g.opt->samples_per_message,
      std::chrono::duration<double>(d.waited).count(),
      std::chrono::duration<double>(d.done_at - g.t0).count(),
      static_cast<long long>(g.t0_epoch_ms));
  std::fflush(stdout);
  return unsent;
}

bool read_password(const std::string& file, std::string* password) {
  std::ifstream pf(file);
  if (!pf || !std::getline(pf, *password)) return false;
  while (!password->empty() && (password->back() == '\r' || password->back() == ' ')) password->pop_back();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  g.opt = &opt;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  g.prof = fw::find_profile(opt.profile.c_str());
  if (g.prof == nullptr) usage(("unknown profile " + opt.profile).c_str());

  // the devices: one (--device), numbered (--devices N) or listed (--devices-file)
  std::vector<fw::DeviceEntry> entries;
  if (opt.devices > 0) {
    if (fw::numbered_devices(opt.device, static_cast<size_t>(opt.devices), &entries) != fw::Status::kOk) {
      usage("--devices: the ids {device}-NNNN must match [A-Za-z0-9_.-]{1,64}");
    }
  } else if (!opt.devices_file.empty()) {
    std::ifstream f(opt.devices_file);
    if (!f) {
      std::fprintf(stderr, "virtual_node: cannot read the devices file %s\n", opt.devices_file.c_str());
      return 1;
    }
    std::stringstream text;
    text << f.rdbuf();
    size_t bad = 0;
    const fw::Status st = fw::parse_device_list(text.str(), &entries, &bad);
    if (st != fw::Status::kOk) {
      std::fprintf(stderr, "virtual_node: devices file %s, line %zu: %s (want DEVICE_ID "
                   "[PASSWORD_FILE [SEQ_FILE]], ids distinct and [A-Za-z0-9_.-]{1,64})\n",
                   opt.devices_file.c_str(), bad, fw::status_name(st));
      return 1;
    }
  } else {
    if (!fw::valid_device_id(opt.device.c_str())) usage("device id must match [A-Za-z0-9_.-]{1,64}");
    entries.push_back(fw::DeviceEntry{opt.device, opt.password_file, opt.seq_file});
  }

  std::string err;
  if (!fw::load_profile_data(opt.profile, opt.data_dir, &g.rows, &err)) {
    std::fprintf(stderr, "virtual_node: %s\n", err.c_str());
    return 1;
  }
  if (g.rows.empty()) {
    std::fprintf(stderr, "virtual_node: no data rows\n");
    return 1;
  }
  int64_t last_event = g.rows[0].event_ms;  // of the whole data set, as the replayer does
  for (const auto& r : g.rows) last_event = std::max(last_event, r.event_ms);
  g.shift = fw::replay_shift_ms(last_event, opt.now_ms >= 0 ? opt.now_ms : wall_epoch_ms());
  if (opt.limit >= 0 && static_cast<size_t>(opt.limit) < g.rows.size()) {
    g.rows.resize(static_cast<size_t>(opt.limit));
  }
  // a full batch must fit below the high-water mark, or speedup 0 would wait for it forever
  g.high_water = std::max(fw::Outbox<128>::capacity() / 2, static_cast<size_t>(opt.samples_per_message));
  g.backpressure = opt.speedup <= 0 || opt.backpressure;

  g.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (g.epfd < 0) {
    std::fprintf(stderr, "virtual_node: epoll_create1: %s\n", std::strerror(errno));
    return 1;
  }
  mosquitto_lib_init();
  std::vector<std::unique_ptr<Device>> devs;
  devs.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const fw::DeviceEntry& e = entries[i];
    auto d = std::make_unique<Device>();
    d->index = i;
    d->id = e.id;
    d->topic = "sensors/" + e.id + "/telemetry";
    d->seq_file = !e.seq_file.empty() ? e.seq_file
                  : !opt.seq_dir.empty() ? opt.seq_dir + "/" + e.id + ".seq"
                                         : ".run/vnode-" + e.id + ".seq";
    d->client_id = !opt.client_id.empty() ? opt.client_id : "vnode-" + e.id + "-" + std::to_string(getpid());
    d->password_file = !e.password_file.empty() ? e.password_file
                       : !opt.password_dir.empty() ? opt.password_dir + "/" + e.id + ".password"
                                                   : "";
    d->username = opt.multi() ? (d->password_file.empty() ? "" : e.id) : opt.username;
    // sequence numbers persisted in a file (NVS on the board)
    const auto slash = d->seq_file.rfind('/');
    if (slash != std::string::npos) mkdir(d->seq_file.substr(0, slash).c_str(), 0755);
    d->storage = std::make_unique<fw::FileSeqStorage>(d->seq_file);
    fw::NodeConfig cfg;
    cfg.device_id = d->id.c_str();
    cfg.format = opt.format;
    cfg.samples_per_message = static_cast<uint8_t>(opt.samples_per_message);
    cfg.seq_block = static_cast<uint32_t>(opt.seq_block);
    const fw::Status ist = d->node.init(cfg, g.prof->channels, g.prof->n_channels, d->storage.get());
    if (ist != fw::Status::kOk) {
      std::fprintf(stderr, "virtual_node: %s: init failed: %s (seq file %s)\n", d->id.c_str(),
                   fw::status_name(ist), d->seq_file.c_str());
      return 1;
    }
    d->seq_begin = d->node.next_seq();
    d->inflight_limit = opt.max_inflight;
    d->mosq = mosquitto_new(d->client_id.c_str(), true, d.get());
    if (d->mosq == nullptr) {
      std::fprintf(stderr, "virtual_node: mosquitto_new failed\n");
      return 1;
    }
    mosquitto_int_option(d->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (!d->username.empty()) {
      std::string password;
      if (!d->password_file.empty() && !read_password(d->password_file, &password)) {
        std::fprintf(stderr, "virtual_node: cannot read the password file %s\n", d->password_file.c_str());
        return 1;
      }
      if (mosquitto_username_pw_set(d->mosq, d->username.c_str(),
                                    d->password_file.empty() ? nullptr : password.c_str()) != MOSQ_ERR_SUCCESS) {
        std::fprintf(stderr, "virtual_node: mosquitto_username_pw_set failed\n");
        return 1;
      }
    }
    if (!opt.cafile.empty() &&
        mosquitto_tls_set(d->mosq, opt.cafile.c_str(), nullptr, nullptr, nullptr, nullptr) != MOSQ_ERR_SUCCESS) {
      std::fprintf(stderr, "virtual_node: mosquitto_tls_set(%s) failed\n", opt.cafile.c_str());
      return 1;
    }
    mosquitto_connect_v5_callback_set(d->mosq, Device::on_connect);
    mosquitto_disconnect_v5_callback_set(d->mosq, Device::on_disconnect);
    mosquitto_publish_v5_callback_set(d->mosq, Device::on_publish);
    d->log("profile %s, %zu readings, seq from %llu (%s), shift %lld weeks, client id %s",
           opt.profile.c_str(), g.rows.size(), static_cast<unsigned long long>(d->node.next_seq()),
           d->seq_file.c_str(), static_cast<long long>(g.shift / (7LL * 86400000)), d->client_id.c_str());
    devs.push_back(std::move(d));
  }

  // one event loop: a device runs when its wake time comes (pacing, backpressure, outage,
  // reconnect backoff) or its socket has something to read or write
  g.t0 = Clock::now();
  g.t0_epoch_ms = wall_epoch_ms();
  fw::WakeQueue wq(devs.size());
  for (auto& d : devs) {
    d->phase_deadline = g.t0 + std::chrono::seconds(5);
    wq.set(d->index, 0);
  }
  size_t live = devs.size();
  uint64_t unsent_total = 0;
  auto run = [&](Device& d, Clock::time_point now) {
    if (d.phase == Phase::kDone) return;
    const Clock::time_point next = advance(d, now);
    if (d.phase == Phase::kDone) {
      wq.clear(d.index);
      unsent_total += print_summary(d);
      mosquitto_destroy(d.mosq);
      d.mosq = nullptr;
      --live;
    } else if (next != Clock::time_point::max()) {
      wq.set(d.index, us_since_start(next));
    } else {
      wq.clear(d.index);
    }
  };
  std::vector<epoll_event> events(std::min<size_t>(devs.size(), 1024));
  auto next_misc = g.t0 + std::chrono::seconds(1);
  bool stop_seen = false;
  while (live > 0) {
    auto now = Clock::now();
    if (g_stop && !stop_seen) {  // every device ends its data now and flushes (<= 3 s)
      stop_seen = true;
      for (auto& d : devs) run(*d, now);
    }
    while (!wq.empty() && wq.top_time() <= us_since_start(now)) run(*devs[wq.pop()], now);
    if (now >= next_misc) {  // keepalive (PINGREQ) and dead-connection checks
      for (auto& d : devs) {
        if (d->phase == Phase::kDone) continue;
        d->misc();
        if (!d->socket_open && d->want_online) run(*d, now);  // lost: schedule the reconnect
      }
      next_misc = now + std::chrono::seconds(1);
    }
    if (live == 0) break;
    auto until = next_misc;
    if (!wq.empty()) until = std::min(until, g.t0 + std::chrono::microseconds(wq.top_time()));
    // round up: a wait cut to 0 ms would spin until the wake time
    const auto wait_us = std::chrono::duration_cast<std::chrono::microseconds>(until - Clock::now()).count();
    const int timeout = static_cast<int>(std::clamp<int64_t>((wait_us + 999) / 1000, 0, 1000));
    const int n = epoll_wait(g.epfd, events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0 && errno != EINTR) {
      std::fprintf(stderr, "virtual_node: epoll_wait: %s\n", std::strerror(errno));
      break;
    }
    now = Clock::now();
    for (int i = 0; i < n; ++i) {
      auto* d = static_cast<Device*>(events[static_cast<size_t>(i)].data.ptr);
      if (d->phase == Phase::kDone) continue;
      d->on_io(events[static_cast<size_t>(i)].events);
      run(*d, now);  // acks may unblock backpressure, an outage start or the flush
    }
  }
  for (auto& d : devs) {
    if (d->mosq != nullptr) mosquitto_destroy(d->mosq);
  }
  mosquitto_lib_cleanup();
  close(g.epfd);
  return unsent_total == 0 ? 0 : 3;
}
