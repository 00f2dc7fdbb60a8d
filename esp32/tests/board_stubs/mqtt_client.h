// Stub of ESP-IDF's esp-mqtt client header (components/mqtt/esp-mqtt/include/mqtt_client.h).
// Declarations only, for a compile check on the host; signatures from ESP-IDF v4.4 (Arduino-ESP32
// 2.0.x, flat esp_mqtt_client_config_t) and ESP-IDF v5.1 (Arduino-ESP32 3.0.x, nested config),
// chosen by FW_STUB_IDF_MAJOR; never linked or run. Only the configuration members near the
// ones the glue sets are declared (the glue zero-initialises the struct and assigns by name);
// the functions and the event types are declared as in the SDK.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "esp_err.h"
#include "esp_event.h"

#ifndef FW_STUB_IDF_MAJOR
#error "define FW_STUB_IDF_MAJOR (4 or 5)"
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct esp_mqtt_client* esp_mqtt_client_handle_t;

typedef enum esp_mqtt_event_id_t {
  MQTT_EVENT_ANY = -1,
  MQTT_EVENT_ERROR = 0,
  MQTT_EVENT_CONNECTED,
  MQTT_EVENT_DISCONNECTED,
  MQTT_EVENT_SUBSCRIBED,
  MQTT_EVENT_UNSUBSCRIBED,
  MQTT_EVENT_PUBLISHED,
  MQTT_EVENT_DATA,
  MQTT_EVENT_BEFORE_CONNECT,
  MQTT_EVENT_DELETED,
#if FW_STUB_IDF_MAJOR >= 5
  MQTT_USER_EVENT,
#endif
} esp_mqtt_event_id_t;

typedef enum esp_mqtt_transport_t {
  MQTT_TRANSPORT_UNKNOWN = 0x0,
  MQTT_TRANSPORT_OVER_TCP,
  MQTT_TRANSPORT_OVER_SSL,
  MQTT_TRANSPORT_OVER_WS,
  MQTT_TRANSPORT_OVER_WSS
} esp_mqtt_transport_t;

typedef struct esp_mqtt_error_codes esp_mqtt_error_codes_t;  // members not needed here

typedef struct esp_mqtt_event_t {
  esp_mqtt_event_id_t event_id;
  esp_mqtt_client_handle_t client;
#if FW_STUB_IDF_MAJOR < 5
  void* user_context;
#endif
  char* data;
  int data_len;
  int total_data_len;
  int current_data_offset;
  char* topic;
  int topic_len;
  int msg_id;
  int session_present;
  esp_mqtt_error_codes_t* error_handle;
#if FW_STUB_IDF_MAJOR >= 5
  bool retain;
  int qos;
  bool dup;
#endif
} esp_mqtt_event_t;

typedef esp_mqtt_event_t* esp_mqtt_event_handle_t;

#if FW_STUB_IDF_MAJOR >= 5
typedef struct esp_mqtt_client_config_t {
  struct broker_t {
    struct address_t {
      const char* uri;
      const char* hostname;
      esp_mqtt_transport_t transport;
      const char* path;
      uint32_t port;
    } address;
    struct verification_t {
      bool use_global_ca_store;
      esp_err_t (*crt_bundle_attach)(void* conf);
      const char* certificate;
      size_t certificate_len;
    } verification;  // (further members omitted)
  } broker;
  struct credentials_t {
    const char* username;
    const char* client_id;
    bool set_null_client_id;
    struct authentication_t {
      const char* password;
      const char* certificate;
      size_t certificate_len;
      const char* key;
      size_t key_len;
    } authentication;  // (further members omitted)
  } credentials;
  struct session_t {
    bool disable_clean_session;
    int keepalive;
    bool disable_keepalive;
  } session;  // (last_will and further members omitted)
  struct network_t {
    int reconnect_timeout_ms;
    int timeout_ms;
    int refresh_connection_after_ms;
    bool disable_auto_reconnect;
  } network;  // (further members omitted)
  struct buffer_t {
    int size;
    int out_size;
  } buffer;
} esp_mqtt_client_config_t;
#else
typedef esp_err_t (*mqtt_event_callback_t)(esp_mqtt_event_handle_t event);
typedef struct {
  mqtt_event_callback_t event_handle;
  esp_event_loop_handle_t event_loop_handle;
  const char* host;
  const char* uri;
  uint32_t port;
  const char* client_id;
  const char* username;
  const char* password;
  const char* lwt_topic;
  const char* lwt_msg;
  int lwt_qos;
  int lwt_retain;
  int lwt_msg_len;
  int disable_clean_session;
  int keepalive;
  bool disable_auto_reconnect;
  void* user_context;
  int task_prio;
  int task_stack;
  int buffer_size;
  const char* cert_pem;
  size_t cert_len;
  // (members from client_cert_pem to use_global_ca_store omitted)
  int reconnect_timeout_ms;
  // (members from alpn_protos to protocol_ver omitted)
  int out_buffer_size;
  // (members from skip_cert_common_name_check to ds_data omitted)
  int network_timeout_ms;
} esp_mqtt_client_config_t;
#endif

esp_mqtt_client_handle_t esp_mqtt_client_init(const esp_mqtt_client_config_t* config);
esp_err_t esp_mqtt_client_set_uri(esp_mqtt_client_handle_t client, const char* uri);
esp_err_t esp_mqtt_client_start(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_reconnect(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_disconnect(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_stop(esp_mqtt_client_handle_t client);
int esp_mqtt_client_publish(esp_mqtt_client_handle_t client, const char* topic, const char* data,
                            int len, int qos, int retain);
int esp_mqtt_client_enqueue(esp_mqtt_client_handle_t client, const char* topic, const char* data,
                            int len, int qos, int retain, bool store);
esp_err_t esp_mqtt_client_destroy(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_register_event(esp_mqtt_client_handle_t client,
                                         esp_mqtt_event_id_t event,
                                         esp_event_handler_t event_handler,
                                         void* event_handler_arg);
int esp_mqtt_client_get_outbox_size(esp_mqtt_client_handle_t client);

#ifdef __cplusplus
}
#endif
