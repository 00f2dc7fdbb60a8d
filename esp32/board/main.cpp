// ESP32 board glue (Arduino core + ESP-IDF esp-mqtt). Thin on purpose: all logic is in the
// portable core (../core), host-tested and run by the virtual node.
//
//  - esp_timer samples the sensors every FW_SAMPLE_PERIOD_MS and submits into the node's
//    sample ring (drops counted as drops.buffer).
//  - loop(): clock from SNTP (readings held until set), node.process(), publish from the
//    outbox with QoS 1 (esp-mqtt; PubSubClient cannot publish QoS 1), acks via PUBACK events.
//  - Wi-Fi and MQTT reconnect with exponential backoff; the outbox keeps readings meanwhile.
#include <Arduino.h>
#include <WiFi.h>
#include <esp_idf_version.h>  // ESP_IDF_VERSION_MAJOR (tested below; not via Arduino.h)
#include <esp_timer.h>
#include <freertos/FreeRTOS.h>
#include <freertos/queue.h>
#include <mqtt_client.h>
#include <sys/time.h>
#include <time.h>

#if __has_include("config.h")
#include "config.h"
#else
#warning "board/config.h not found: using config.example.h (copy it and fill in your settings)"
#include "config.example.h"
#endif

#include "node.h"
#include "nvs_seq_storage.h"
#include "profiles.h"

// Older config.h files predate batching: default to one reading per message.
#ifndef FW_SAMPLES_PER_MESSAGE
#define FW_SAMPLES_PER_MESSAGE 1
#endif
#ifndef FW_BATCH_MAX_WAIT_MS
#define FW_BATCH_MAX_WAIT_MS 10000
#endif
static_assert(FW_SAMPLES_PER_MESSAGE >= 1 && FW_SAMPLES_PER_MESSAGE <= 100,
              "FW_SAMPLES_PER_MESSAGE must be 1..100");

namespace {

fw::Node<> g_node;  // default capacities: see README "Static RAM"
fw::NvsSeqStorage g_nvs;
portMUX_TYPE g_mux = portMUX_INITIALIZER_UNLOCKED;
esp_mqtt_client_handle_t g_mqtt = nullptr;
QueueHandle_t g_events = nullptr;  // esp-mqtt task -> loop()
char g_topic[96];
// one payload: a single reading, or a batch of FW_SAMPLES_PER_MESSAGE samples (worst case)
char g_payload[FW_SAMPLES_PER_MESSAGE > 1 ? fw::json_batch_bound(FW_SAMPLES_PER_MESSAGE) : 1024];
uint32_t g_last_publish_ms = 0;  // millis32() of the last publish (partial batch timer)

struct MqttEvent {
  enum Kind : uint8_t { kConnected, kDisconnected, kPublished } kind;
  int msg_id;
};

struct InFlight {
  int msg_id;
  uint64_t seq;  // first seq of the payload
  size_t n;      // samples it carries (acked as a unit)
};
InFlight g_inflight[FW_MAX_INFLIGHT];
size_t g_n_inflight = 0;
bool g_connected = false;
uint32_t g_backoff_ms = FW_BACKOFF_MIN_MS;
uint32_t g_next_reconnect_ms = 0;
int64_t g_last_clock_sync_ms = -FW_CLOCK_RESYNC_MS;

int64_t uptime_ms() { return esp_timer_get_time() / 1000; }
/// millis() as 32 bits (unsigned long is 32-bit on the ESP32; explicit, so it also holds
/// where unsigned long is wider, e.g. the host compile check). Differences wrap correctly.
uint32_t millis32() { return static_cast<uint32_t>(millis()); }

/// Reads the sensors into s. Replace with the real drivers of your hardware (e.g. an SHT3x for
/// temp_c / humidity_pct, an SCD30 for co2_ppm, an ADXL345 snapshot RMS for h_rms_g). The
/// default reads the chip's internal temperature sensor so a bare esp32dev produces data.
void read_sensors(fw::Sample* s) {
  s->count = 0;
  s->readings[s->count++] = fw::Reading{temperatureRead(), fw::Sensor::kTempC};
}

/// esp_timer callback (esp_timer task context, not an ISR).
void on_sample_timer(void*) {
  fw::Sample s;
  s.mono_ms = uptime_ms();
  read_sensors(&s);
  portENTER_CRITICAL(&g_mux);
  g_node.submit(s);  // full: dropped and counted (drops.buffer)
  portEXIT_CRITICAL(&g_mux);
}

void on_mqtt_event(void*, esp_event_base_t, int32_t id, void* data) {
  auto* ev = static_cast<esp_mqtt_event_handle_t>(data);
  MqttEvent e{MqttEvent::kConnected, 0};
  switch (id) {
    case MQTT_EVENT_CONNECTED: e.kind = MqttEvent::kConnected; break;
    case MQTT_EVENT_DISCONNECTED: e.kind = MqttEvent::kDisconnected; break;
    case MQTT_EVENT_PUBLISHED: e.kind = MqttEvent::kPublished; e.msg_id = ev->msg_id; break;
    default: return;
  }
  xQueueSend(g_events, &e, 0);
}

void handle_mqtt_events() {
  MqttEvent e;
  while (xQueueReceive(g_events, &e, 0) == pdTRUE) {
    if (e.kind == MqttEvent::kConnected) {
      g_connected = true;
      g_backoff_ms = FW_BACKOFF_MIN_MS;
      Serial.println("mqtt: connected");
    } else if (e.kind == MqttEvent::kDisconnected) {
      if (g_connected) Serial.println("mqtt: disconnected");
      g_connected = false;
      g_n_inflight = 0;
      g_node.outbox().on_disconnect();  // unacked messages go again, in order
      g_next_reconnect_ms = millis32() + g_backoff_ms;
      g_backoff_ms = g_backoff_ms * 2 > FW_BACKOFF_MAX_MS ? FW_BACKOFF_MAX_MS : g_backoff_ms * 2;
    } else {
      for (size_t i = 0; i < g_n_inflight; ++i) {
        if (g_inflight[i].msg_id == e.msg_id) {
          g_node.outbox().ack_batch(g_inflight[i].seq, g_inflight[i].n);
          g_inflight[i] = g_inflight[--g_n_inflight];
          break;
        }
      }
    }
  }
}

void pump_outbox() {
  while (g_connected && g_n_inflight < FW_MAX_INFLIGHT) {
    // a partial batch goes out when nothing was published for FW_BATCH_MAX_WAIT_MS
    const bool flush = millis32() - g_last_publish_ms >= FW_BATCH_MAX_WAIT_MS;
    size_t len = 0, n = 0;
    uint64_t seq = 0;
    const fw::Status st = g_node.next_payload(flush, g_payload, sizeof(g_payload), &len, &seq, &n);
    if (st == fw::Status::kEmpty) return;
    if (st != fw::Status::kOk) {
      g_node.outbox().mark_sent(n);  // cannot happen for validated readings; do not loop on it
      g_node.outbox().ack_batch(seq, n);
      continue;
    }
    const int id = esp_mqtt_client_publish(g_mqtt, g_topic, g_payload, static_cast<int>(len), 1, 0);
    if (id <= 0) return;  // not connected / out of buffer: retry next loop
    g_inflight[g_n_inflight++] = InFlight{id, seq, n};
    g_node.outbox().mark_sent(n);
    g_last_publish_ms = millis32();
  }
}

void sync_clock() {
  const int64_t now = uptime_ms();
  if (g_node.clock().is_set() && now - g_last_clock_sync_ms < FW_CLOCK_RESYNC_MS) return;
  timeval tv;
  gettimeofday(&tv, nullptr);
  const int64_t epoch_ms = static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
  if (g_node.set_clock(uptime_ms(), epoch_ms) == fw::Status::kOk) {  // < 2020: not synced yet
    g_last_clock_sync_ms = now;
  }
}

void maintain_links() {
  if (WiFi.status() != WL_CONNECTED) return;  // WiFi.setAutoReconnect handles Wi-Fi
  if (!g_connected && static_cast<int32_t>(millis32() - g_next_reconnect_ms) >= 0) {
    esp_mqtt_client_reconnect(g_mqtt);
    g_next_reconnect_ms = millis32() + g_backoff_ms;
    g_backoff_ms = g_backoff_ms * 2 > FW_BACKOFF_MAX_MS ? FW_BACKOFF_MAX_MS : g_backoff_ms * 2;
  }
}

}  // namespace

/// Setup cannot continue: say why on the serial console, then restart after 10 s (a transient
/// failure such as low memory at boot may clear; a configuration error repeats visibly).
[[noreturn]] void fatal(const char* why) {
  Serial.print("fatal: ");
  Serial.println(why);
  delay(10000);
  ESP.restart();
  for (;;) delay(1000);  // not reached
}

void setup() {
  Serial.begin(115200);
  if (FW_ALARM_LED_PIN >= 0) pinMode(FW_ALARM_LED_PIN, OUTPUT);
  const fw::Profile* prof = fw::find_profile(FW_DEVICE_PROFILE);
  fw::NodeConfig cfg;
  cfg.device_id = FW_DEVICE_ID;
  cfg.samples_per_message = FW_SAMPLES_PER_MESSAGE;
  if (prof == nullptr || !g_nvs.begin() ||
      g_node.init(cfg, prof->channels, prof->n_channels, &g_nvs) != fw::Status::kOk) {
    fatal("bad profile / device id, or NVS unavailable");
  }
  snprintf(g_topic, sizeof(g_topic), "sensors/%s/telemetry", FW_DEVICE_ID);

  WiFi.mode(WIFI_STA);
  WiFi.setAutoReconnect(true);
  WiFi.begin(FW_WIFI_SSID, FW_WIFI_PASSWORD);
  configTime(0, 0, FW_NTP_SERVER);  // SNTP sets the system clock (UTC) in the background

  g_events = xQueueCreate(32, sizeof(MqttEvent));
  if (g_events == nullptr) fatal("no memory for the MQTT event queue");
  esp_mqtt_client_config_t mc = {};
#if ESP_IDF_VERSION_MAJOR >= 5
  mc.broker.address.uri = FW_MQTT_URI;
  mc.credentials.client_id = FW_DEVICE_ID;
  mc.credentials.username = FW_MQTT_USERNAME[0] ? FW_MQTT_USERNAME : nullptr;
  mc.credentials.authentication.password = FW_MQTT_PASSWORD[0] ? FW_MQTT_PASSWORD : nullptr;
  mc.broker.verification.certificate = FW_MQTT_CA_PEM[0] ? FW_MQTT_CA_PEM : nullptr;  // PEM: length 0
  mc.network.disable_auto_reconnect = true;  // our backoff in maintain_links()
#else
  mc.uri = FW_MQTT_URI;
  mc.client_id = FW_DEVICE_ID;
  mc.username = FW_MQTT_USERNAME[0] ? FW_MQTT_USERNAME : nullptr;
  mc.password = FW_MQTT_PASSWORD[0] ? FW_MQTT_PASSWORD : nullptr;
  mc.cert_pem = FW_MQTT_CA_PEM[0] ? FW_MQTT_CA_PEM : nullptr;
  mc.disable_auto_reconnect = true;
#endif
  g_mqtt = esp_mqtt_client_init(&mc);
  if (g_mqtt == nullptr) fatal("esp_mqtt_client_init failed (bad URI or no memory)");
  if (esp_mqtt_client_register_event(g_mqtt, static_cast<esp_mqtt_event_id_t>(ESP_EVENT_ANY_ID),
                                     on_mqtt_event, nullptr) != ESP_OK ||
      esp_mqtt_client_start(g_mqtt) != ESP_OK) {
    fatal("MQTT client could not start");
  }

  esp_timer_create_args_t targs = {};  // by name: 4.4 and 5.x also have skip_unhandled_events
  targs.callback = on_sample_timer;
  targs.dispatch_method = ESP_TIMER_TASK;
  targs.name = "sample";
  esp_timer_handle_t timer = nullptr;
  if (esp_timer_create(&targs, &timer) != ESP_OK ||
      esp_timer_start_periodic(timer, static_cast<uint64_t>(FW_SAMPLE_PERIOD_MS) * 1000) != ESP_OK) {
    fatal("sampling timer could not start");
  }
}

void loop() {
  sync_clock();
  // The lock guards only the sample buffer, which the timer task fills: record() runs outside it
  // because every seq_block-th message it persists the seq to NVS flash, and ESP-IDF forbids
  // flash writes (and anything blocking) inside a critical section.
  for (;;) {
    fw::Sample s;
    portENTER_CRITICAL(&g_mux);
    const bool got = g_node.take_sample(&s) == fw::Status::kOk;
    portEXIT_CRITICAL(&g_mux);
    if (!got) break;
    g_node.record(s);
  }
  handle_mqtt_events();
  maintain_links();
  pump_outbox();
  if (FW_ALARM_LED_PIN >= 0) digitalWrite(FW_ALARM_LED_PIN, g_node.alarm_active() ? HIGH : LOW);
  delay(10);
}
