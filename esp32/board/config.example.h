// Board settings template. Copy to board/config.h (git-ignored) and fill in; never commit
// config.h. If config.h is absent the build uses this file and warns.
#pragma once

// Wi-Fi (2.4 GHz)
#define FW_WIFI_SSID "your-ssid"
#define FW_WIFI_PASSWORD "your-wifi-password"

// MQTT broker (Mosquitto of the stack). mqtt://host:port, or mqtts://host:8883 with the CA
// below (the docker-compose deployment is TLS only).
#define FW_MQTT_URI "mqtt://192.168.1.10:1883"

// Identity. The broker refuses anonymous clients: each node has its own credential, made by
//   iotflink device add esp32-node-1
// which prints these three lines (username = device id; the broker lets it publish only on
// sensors/<device id>/telemetry). Device id: topic sensors/{id}/telemetry, [A-Za-z0-9_.-]{1,64}.
#define FW_DEVICE_ID "esp32-node-1"
#define FW_MQTT_USERNAME "esp32-node-1"
#define FW_MQTT_PASSWORD "paste-the-password-from-device-add"

// TLS (mqtts:// URIs): PEM text of the CA certificate that signed the broker's certificate
// (the local stack's <run dir>/mosquitto/tls/ca.crt, or deploy/secrets/tls/ca.crt of
// `iotflink tls init`), as one string literal with \n line ends. The node then
// verifies the broker and its host name. Empty: no CA (plain mqtt:// only).
#define FW_MQTT_CA_PEM ""

// Channel profile from core/profiles.cpp ("nab-machine", "femto-b1_1", "occupancy-office").
#define FW_DEVICE_PROFILE "occupancy-office"

// Sampling period, ms (esp_timer). 1000 = 1 Hz.
#define FW_SAMPLE_PERIOD_MS 1000

// SNTP server; the event clock re-reads system time every FW_CLOCK_RESYNC_MS.
#define FW_NTP_SERVER "pool.ntp.org"
#define FW_CLOCK_RESYNC_MS 600000

// Samples per MQTT message: 1 = one reading per message; 2..100 = batches (docs/CONTRACT.md
// "Batches"): fewer messages for the broker and the bridge, one PUBACK per batch. A partial
// batch is sent when nothing was published for FW_BATCH_MAX_WAIT_MS.
#define FW_SAMPLES_PER_MESSAGE 1
#define FW_BATCH_MAX_WAIT_MS 10000

// QoS 1 messages in flight at once (Mosquitto's default max_inflight_messages is 20).
#define FW_MAX_INFLIGHT 10

// MQTT reconnect backoff, ms: doubles from MIN to MAX.
#define FW_BACKOFF_MIN_MS 500
#define FW_BACKOFF_MAX_MS 30000

// GPIO of a local alarm LED (hysteresis alarm or spike->rise sequence); -1 = none.
#define FW_ALARM_LED_PIN 2
