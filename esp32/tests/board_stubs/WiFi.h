// Stub of Arduino-ESP32's libraries/WiFi/src/WiFi.h (WiFiType.h, WiFiGeneric.h, WiFiSTA.h).
// Declarations only, for a compile check on the host; signatures from Arduino-ESP32 2.0.x
// (ESP-IDF 4.4) and 3.0.x (ESP-IDF 5.1), identical for what is declared here; never linked or
// run. wifi_mode_t is ESP-IDF's (esp_wifi_types.h).
#pragma once
#include "Arduino.h"

typedef enum {
  WIFI_MODE_NULL = 0,
  WIFI_MODE_STA,
  WIFI_MODE_AP,
  WIFI_MODE_APSTA,
  WIFI_MODE_MAX
} wifi_mode_t;

// WiFiType.h
#define WiFiMode_t wifi_mode_t
#define WIFI_OFF WIFI_MODE_NULL
#define WIFI_STA WIFI_MODE_STA
#define WIFI_AP WIFI_MODE_AP
#define WIFI_AP_STA WIFI_MODE_APSTA

typedef enum {
  WL_NO_SHIELD = 255,
  WL_IDLE_STATUS = 0,
  WL_NO_SSID_AVAIL = 1,
  WL_SCAN_COMPLETED = 2,
  WL_CONNECTED = 3,
  WL_CONNECT_FAILED = 4,
  WL_CONNECTION_LOST = 5,
  WL_DISCONNECTED = 6
} wl_status_t;

// WiFiGeneric.h (subset)
class WiFiGenericClass {
 public:
  static bool mode(wifi_mode_t);
  static wifi_mode_t getMode();
};

// WiFiSTA.h (subset)
class WiFiSTAClass {
 public:
  wl_status_t begin(const char* ssid, const char* passphrase = NULL, int32_t channel = 0,
                    const uint8_t* bssid = NULL, bool connect = true);
  bool reconnect();
  bool disconnect(bool wifioff = false, bool eraseap = false);
  bool isConnected();
  bool setAutoReconnect(bool autoReconnect);
  bool getAutoReconnect();
  static wl_status_t status();
  int8_t RSSI();
};

// WiFi.h
class WiFiClass : public WiFiGenericClass, public WiFiSTAClass {};
extern WiFiClass WiFi;
