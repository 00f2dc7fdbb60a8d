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
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "../core/node.h"
#include "../core/profiles.h"
#include "data_source.h"
#include "file_seq_storage.h"

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
  int samples_per_message = 1;  // samples per MQTT message (1 = single readings, >1 = batches)
  fw::PayloadFormat format = fw::PayloadFormat::kContractJson;
  long clock_late = 0;
  int64_t now_ms = -1;          // wall epoch ms for the replay shift; -1 = the real clock
  int64_t pace_origin_ms = -1;  // shared event-time clock origin (epoch ms); -1 = own uptime
  bool quiet = false;
  bool backpressure = false;  // speedup > 0: wait while the outbox is half full (see above)
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
               "  [--backpressure]\n"
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
    else if (a == "--samples-per-message") o.samples_per_message = std::atoi(val().c_str());
    else if (a == "--clock-late") o.clock_late = std::atol(val().c_str());
    else if (a == "--now-ms") o.now_ms = std::atoll(val().c_str());
    else if (a == "--pace-origin-ms") o.pace_origin_ms = std::atoll(val().c_str());
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
  if (o.seq_file.empty()) o.seq_file = ".run/vnode-" + o.device + ".seq";
  if (o.client_id.empty()) o.client_id = "vnode-" + o.device + "-" + std::to_string(getpid());
  return o;
}

int64_t wall_epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

fw::Node<> g_node;  // default board configuration (static, like on the board)

/// MQTT side of the node: connection state, in-flight map, counters.
struct Link {
  const Options* opt = nullptr;
  mosquitto* mosq = nullptr;
  std::string topic;
  bool want_online = true;  // false during a simulated outage
  bool socket_open = false; // mosquitto_connect/reconnect succeeded, not yet disconnected
  bool ready = false;       // CONNACK accepted
  int inflight_limit = 20;
  int receive_max = 65535;
  /// MQTT message id -> (first seq, samples) of the payload in flight under it
  std::unordered_map<int, std::pair<uint64_t, size_t>> mid_to_seq;
  bool flush = false;  // end of data: send a partial batch too
  uint64_t sends = 0, rejected = 0, connects = 0, no_subscribers = 0;
  /// seqs the broker accepted (PUBACK reason < 0x80), each once: the exact set that reached
  /// the broker (duplicates after a lost PUBACK are counted once)
  std::vector<uint64_t> acked;
  size_t acked_sorted = 0;  // acked[0, acked_sorted) is sorted and unique
  uint64_t published() {
    compact();
    return acked.size();
  }
  void compact() {
    if (acked_sorted == acked.size()) return;
    std::sort(acked.begin(), acked.end());
    acked.erase(std::unique(acked.begin(), acked.end()), acked.end());
    acked_sorted = acked.size();
  }
  Clock::time_point next_retry = Clock::now();
  double backoff_s = 0.5;

  void log(const char* fmt, ...) const __attribute__((format(printf, 2, 3))) {
    if (opt->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "[vnode %s] ", opt->device.c_str());
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
  }

  static void on_connect(mosquitto*, void* ctx, int rc, int, const mosquitto_property* props) {
    auto* l = static_cast<Link*>(ctx);
    if (rc != 0) {
      l->log("connect refused: %s", mosquitto_reason_string(rc));
      return;
    }
    uint16_t rm = 0;
    l->receive_max =
        mosquitto_property_read_int16(props, MQTT_PROP_RECEIVE_MAXIMUM, &rm, false) ? rm : 65535;
    l->inflight_limit = std::min(l->opt->max_inflight, l->receive_max);
    l->ready = true;
    l->backoff_s = 0.5;
    ++l->connects;
    l->log("connected (broker receive-maximum %d, in-flight limit %d)", l->receive_max,
           l->inflight_limit);
  }
  static void on_disconnect(mosquitto*, void* ctx, int rc, const mosquitto_property*) {
    auto* l = static_cast<Link*>(ctx);
    l->ready = false;
    l->socket_open = false;
    l->mid_to_seq.clear();
    g_node.outbox().on_disconnect();  // unacked messages will be sent again, in order
    if (rc != 0) l->log("connection lost (%s)", mosquitto_strerror(rc));
  }
  static void on_publish(mosquitto*, void* ctx, int mid, int reason, const mosquitto_property*) {
    auto* l = static_cast<Link*>(ctx);
    auto it = l->mid_to_seq.find(mid);
    if (it == l->mid_to_seq.end()) return;
    const uint64_t seq = it->second.first;
    const size_t n = it->second.second;
    l->mid_to_seq.erase(it);
    // the broker has it (or refused it for good): its samples leave the outbox either way, as
    // a unit, even when the outbox already dropped some (then ack_batch() says kNotFound)
    g_node.outbox().ack_batch(seq, n);
    if (reason >= 0x80) {  // refused: not published, counted in dropped (never retried)
      ++l->rejected;
      l->log("PUBACK for seq %llu (+%zu): reason 0x%02x", static_cast<unsigned long long>(seq),
             n - 1, reason);
      return;
    }
    if (reason == 0x10) ++l->no_subscribers;  // accepted, but nobody subscribed (MQTT v5)
    for (size_t i = 0; i < n; ++i) l->acked.push_back(seq + i);
  }

  /// Opens the connection when wanted and due (exponential backoff 0.5 s .. 8 s).
  void maybe_connect() {
    if (!want_online || socket_open || Clock::now() < next_retry) return;
    const int rc = connects == 0 && sends == 0
                       ? mosquitto_connect(mosq, opt->host.c_str(), opt->port, 30)
                       : mosquitto_reconnect(mosq);
    if (rc == MOSQ_ERR_SUCCESS) {
      socket_open = true;
    } else {
      log("connect to %s:%d failed: %s (retry in %.1f s)", opt->host.c_str(), opt->port,
          mosquitto_strerror(rc), backoff_s);
      next_retry = Clock::now() + std::chrono::milliseconds(static_cast<int>(backoff_s * 1000));
      backoff_s = std::min(backoff_s * 2, 8.0);
    }
  }

  /// Sends due payloads (single readings or batches) while the in-flight limit (MQTT
  /// messages awaiting PUBACK) allows.
  void pump() {
    static char buf[fw::json_batch_bound(fw::kMaxSamplesPerMessage)];
    while (ready && static_cast<int>(mid_to_seq.size()) < inflight_limit) {
      size_t len = 0, n = 0;
      uint64_t seq = 0;
      const fw::Status st = g_node.next_payload(flush, buf, sizeof(buf), &len, &seq, &n);
      if (st == fw::Status::kEmpty) break;
      if (st != fw::Status::kOk) {  // cannot happen for validated readings; never loop on it
        log("encode failed for seq %llu (+%zu): %s", static_cast<unsigned long long>(seq), n - 1,
            fw::status_name(st));
        g_node.outbox().mark_sent(n);
        g_node.outbox().ack_batch(seq, n);
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
      g_node.outbox().mark_sent(n);
      ++sends;
    }
  }

  /// Services the network for up to timeout_ms (0 = do not block).
  void service(int timeout_ms) {
    maybe_connect();
    if (socket_open) {
      const int rc = mosquitto_loop(mosq, timeout_ms, 1);
      if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && socket_open) {
        on_disconnect(mosq, this, rc, nullptr);
        next_retry = Clock::now() + std::chrono::milliseconds(static_cast<int>(backoff_s * 1000));
        backoff_s = std::min(backoff_s * 2, 8.0);
      }
      pump();
    } else if (timeout_ms > 0) {
      usleep(static_cast<useconds_t>(std::min(timeout_ms, 50)) * 1000);
    }
  }

  /// Simulated outage start: waits (<= 10 s) for outstanding PUBACKs, then disconnects.
  void go_offline() {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (g_node.outbox().in_flight() > 0 && Clock::now() < deadline && !g_stop) service(50);
    want_online = false;
    if (socket_open) {
      mosquitto_disconnect(mosq);
      for (int i = 0; i < 20 && socket_open; ++i) mosquitto_loop(mosq, 10, 1);
      socket_open = false;
      ready = false;
    }
    log("outage: offline");
  }
};

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  const fw::Profile* prof = fw::find_profile(opt.profile.c_str());
  if (prof == nullptr) usage(("unknown profile " + opt.profile).c_str());
  if (!fw::valid_device_id(opt.device.c_str())) usage("device id must match [A-Za-z0-9_.-]{1,64}");

  std::vector<fw::DataRow> rows;
  std::string err;
  if (!fw::load_profile_data(opt.profile, opt.data_dir, &rows, &err)) {
    std::fprintf(stderr, "virtual_node: %s\n", err.c_str());
    return 1;
  }
  if (rows.empty()) {
    std::fprintf(stderr, "virtual_node: no data rows\n");
    return 1;
  }
  int64_t last_event = rows[0].event_ms;  // of the whole data set, as the replayer does
  for (const auto& r : rows) last_event = std::max(last_event, r.event_ms);
  const int64_t shift = fw::replay_shift_ms(last_event, opt.now_ms >= 0 ? opt.now_ms : wall_epoch_ms());
  if (opt.limit >= 0 && static_cast<size_t>(opt.limit) < rows.size()) {
    rows.resize(static_cast<size_t>(opt.limit));
  }

  // sequence numbers persisted in a file (NVS on the board)
  {
    const auto slash = opt.seq_file.rfind('/');
    if (slash != std::string::npos) mkdir(opt.seq_file.substr(0, slash).c_str(), 0755);
  }
  fw::FileSeqStorage storage(opt.seq_file);
  fw::NodeConfig cfg;
  cfg.device_id = opt.device.c_str();
  cfg.format = opt.format;
  cfg.samples_per_message = static_cast<uint8_t>(opt.samples_per_message);
  const fw::Status ist = g_node.init(cfg, prof->channels, prof->n_channels, &storage);
  if (ist != fw::Status::kOk) {
    std::fprintf(stderr, "virtual_node: init failed: %s (seq file %s)\n", fw::status_name(ist),
                 opt.seq_file.c_str());
    return 1;
  }

  const uint64_t seq_begin = g_node.next_seq();
  mosquitto_lib_init();
  Link link;
  link.opt = &opt;
  link.topic = "sensors/" + opt.device + "/telemetry";
  link.inflight_limit = opt.max_inflight;
  link.mosq = mosquitto_new(opt.client_id.c_str(), true, &link);
  if (link.mosq == nullptr) {
    std::fprintf(stderr, "virtual_node: mosquitto_new failed\n");
    return 1;
  }
  mosquitto_int_option(link.mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  if (!opt.username.empty()) {
    std::string password;
    if (!opt.password_file.empty()) {
      std::ifstream pf(opt.password_file);
      if (!pf || !std::getline(pf, password)) {
        std::fprintf(stderr, "virtual_node: cannot read the password file %s\n", opt.password_file.c_str());
        return 1;
      }
      while (!password.empty() && (password.back() == '\r' || password.back() == ' ')) password.pop_back();
    }
    if (mosquitto_username_pw_set(link.mosq, opt.username.c_str(),
                                  opt.password_file.empty() ? nullptr : password.c_str()) != MOSQ_ERR_SUCCESS) {
      std::fprintf(stderr, "virtual_node: mosquitto_username_pw_set failed\n");
      return 1;
    }
  }
  if (!opt.cafile.empty() &&
      mosquitto_tls_set(link.mosq, opt.cafile.c_str(), nullptr, nullptr, nullptr, nullptr) != MOSQ_ERR_SUCCESS) {
    std::fprintf(stderr, "virtual_node: mosquitto_tls_set(%s) failed\n", opt.cafile.c_str());
    return 1;
  }
  mosquitto_connect_v5_callback_set(link.mosq, Link::on_connect);
  mosquitto_disconnect_v5_callback_set(link.mosq, Link::on_disconnect);
  mosquitto_publish_v5_callback_set(link.mosq, Link::on_publish);
  link.log("profile %s, %zu readings, seq from %llu (%s), shift %lld weeks, client id %s",
           opt.profile.c_str(), rows.size(), static_cast<unsigned long long>(g_node.next_seq()),
           opt.seq_file.c_str(), static_cast<long long>(shift / (7LL * 86400000)),
           opt.client_id.c_str());

  const auto t0 = Clock::now();
  const int64_t first_event = rows[0].event_ms;
  int64_t mono = 0;  // device uptime, ms: non-decreasing data time
  int64_t pace = 0;  // ms of the pacing clock this reading is due at: uptime, or shared clock
  bool offline = false;
  int64_t outage_end_mono = 0;
  Clock::time_point outage_end_wall;
  size_t processed = 0;
  // a full batch must fit below the high-water mark, or speedup 0 would wait for it forever
  const size_t kHighWater = std::max(fw::Outbox<128>::capacity() / 2,
                                     static_cast<size_t>(opt.samples_per_message));
  constexpr auto kStallLimit = std::chrono::seconds(30);  // backpressure: wait for a connection
  const bool backpressure = opt.speedup <= 0 || opt.backpressure;
  Clock::duration waited{0};  // wall time spent waiting for the outbox (backpressure)
  // wait for the first CONNACK (bounded) so speedup 0 does not start offline
  for (int i = 0; i < 100 && !link.ready && !g_stop; ++i) link.service(50);

  for (size_t i = 0; i < rows.size() && !g_stop; ++i) {
    const fw::DataRow& row = rows[i];
    mono = std::max(mono, row.event_ms - first_event);
    if (opt.speedup > 0) {  // pace by event time
      pace = opt.pace_origin_ms >= 0 ? std::max(pace, row.event_ms + shift - opt.pace_origin_ms) : mono;
      const auto target = t0 + std::chrono::microseconds(
                                   static_cast<int64_t>(static_cast<double>(pace) * 1000.0 / opt.speedup));
      while (!g_stop) {
        const auto now = Clock::now();
        if (now >= target) break;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(target - now);
        link.service(static_cast<int>(std::min<int64_t>(left.count() + 1, 100)));
      }
    }
    if (backpressure) {  // let the outbox drain while online (speedup 0, or --backpressure)
      // Data time stands still while we wait, so waiting loses nothing: also wait while
      // (re)connecting, e.g. for the CONNACK after an outage, but at most kStallLimit without a
      // connection (broker gone: keep playing; the outbox then drops the oldest, counted).
      const auto stall_start = Clock::now();
      while (!g_stop && !offline && g_node.outbox().size() >= kHighWater) {
        if (!link.ready && Clock::now() - stall_start > kStallLimit) break;
        link.service(100);
      }
      waited += Clock::now() - stall_start;
    }
    if (opt.outage_at >= 0 && static_cast<long>(i) == opt.outage_at && !offline) {
      link.go_offline();
      offline = true;
      outage_end_mono = mono + static_cast<int64_t>(opt.outage_seconds * 1000.0);
      outage_end_wall = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(
                                           opt.speedup > 0 ? opt.outage_seconds * 1000.0 / opt.speedup : 0));
    }
    if (offline && mono >= outage_end_mono && Clock::now() >= outage_end_wall) {
      offline = false;
      link.want_online = true;
      link.log("outage over: reconnecting, %zu queued", g_node.outbox().size());
    }
    // SNTP: the clock is set after --clock-late readings; data time is the true wall time
    const int64_t truth = row.event_ms + shift;
    if (static_cast<long>(i) >= opt.clock_late) {
      int64_t now_ts = 0;
      if (g_node.clock().to_epoch(mono, &now_ts) != fw::Status::kOk || now_ts != truth) {
        g_node.set_clock(mono, truth);
      }
    }
    fw::Sample s;
    s.mono_ms = mono;
    s.count = row.count;
    for (uint8_t k = 0; k < row.count; ++k) s.readings[k] = row.readings[k];
    g_node.submit(s);
    g_node.process();
    ++processed;
    link.service(0);
  }

  // end of data: finish a pending outage, then flush the outbox (give up after 30 s idle),
  // a partial batch included
  link.flush = true;
  if (offline) {
    while (!g_stop && Clock::now() < outage_end_wall) link.service(50);
    link.want_online = true;
    link.log("outage over: reconnecting, %zu queued", g_node.outbox().size());
  }
  if (!g_node.clock().is_set() && g_node.held() > 0) {
    link.log("clock never set: %zu readings held and not sent", g_node.held());
  }
  auto last_progress = Clock::now();
  size_t last_published = link.acked.size();
  while (!g_node.outbox().empty() && Clock::now() - last_progress < std::chrono::seconds(30)) {
    if (g_stop && Clock::now() - last_progress > std::chrono::seconds(3)) break;
    link.service(50);
    if (link.acked.size() != last_published) {
      last_published = link.acked.size();
      last_progress = Clock::now();
    }
  }
  if (link.socket_open) {
    mosquitto_disconnect(link.mosq);
    for (int i = 0; i < 20 && link.socket_open; ++i) mosquitto_loop(link.mosq, 10, 1);
  }
  mosquitto_destroy(link.mosq);
  mosquitto_lib_cleanup();

  const fw::DropCounters d = g_node.drops();
  const uint64_t unsent = g_node.outbox().size() + g_node.held();
  // messages = seqs handed out this run; each either reached the broker or is dropped
  const uint64_t seq_end = g_node.next_seq();
  const uint64_t messages = seq_end - seq_begin;
  const uint64_t published = link.published();
  const uint64_t dropped = uint64_t{d.buffer} + d.storage + (messages - published);
  std::string ranges;  // acked seqs as [lo,hi] ranges, ascending
  for (size_t i = 0; i < link.acked.size();) {
    size_t j = i;
    while (j + 1 < link.acked.size() && link.acked[j + 1] == link.acked[j] + 1) ++j;
    ranges += (ranges.empty() ? "[" : ",[") + std::to_string(link.acked[i]) + "," +
              std::to_string(link.acked[j]) + "]";
    i = j + 1;
  }
  const bool have = published > 0;
  const auto& ev = g_node.events();
  std::printf(
      "{\"device_id\":\"%s\",\"published\":%llu,\"dropped\":%llu,\"first_seq\":%s,"
      "\"last_seq\":%s,\"seq_begin\":%llu,\"seq_end\":%llu,\"acked_ranges\":[%s],"
      "\"messages\":%llu,\"readings\":%zu,\"invalid\":%u,\"unsent\":%llu,"
      "\"drops\":{\"buffer\":%u,\"outbox\":%u,\"clock\":%u,\"storage\":%u},"
      "\"sends\":%llu,\"rejected\":%llu,\"no_subscribers\":%llu,\"connects\":%llu,"
      "\"clock_jumps\":%u,\"spikes\":%u,\"sequence_matches\":%u,\"z_anomalies\":%u,"
      "\"samples_per_message\":%d,\"backpressure_s\":%.3f,\"wall_s\":%.3f}\n",
      opt.device.c_str(), static_cast<unsigned long long>(published),
      static_cast<unsigned long long>(dropped),
      have ? std::to_string(link.acked.front()).c_str() : "null",
      have ? std::to_string(link.acked.back()).c_str() : "null",
      static_cast<unsigned long long>(seq_begin), static_cast<unsigned long long>(seq_end),
      ranges.c_str(), static_cast<unsigned long long>(messages), processed, d.invalid,
      static_cast<unsigned long long>(unsent), d.buffer, d.outbox, d.clock, d.storage,
      static_cast<unsigned long long>(link.sends), static_cast<unsigned long long>(link.rejected),
      static_cast<unsigned long long>(link.no_subscribers),
      static_cast<unsigned long long>(link.connects), g_node.clock().jumps(), ev.spikes,
      ev.sequence_matches, ev.z_anomalies, opt.samples_per_message,
      std::chrono::duration<double>(waited).count(),
      std::chrono::duration<double>(Clock::now() - t0).count());
  std::fflush(stdout);
  return unsent == 0 ? 0 : 3;
}
