// Stub of ESP-IDF components/esp_common/include/esp_idf_version.h.
// Declarations only, for a compile check on the host; signatures from ESP-IDF v4.4 (Arduino-ESP32
// 2.0.x) and v5.1 (Arduino-ESP32 3.0.x); never linked or run.
// The modelled IDF major version is chosen with -DFW_STUB_IDF_MAJOR=4 or 5 (CMakeLists.txt
// compiles the board glue once per version).
#pragma once

#ifndef FW_STUB_IDF_MAJOR
#error "define FW_STUB_IDF_MAJOR: 4 (ESP-IDF 4.4, Arduino-ESP32 2.x) or 5 (5.1, Arduino-ESP32 3.x)"
#endif

#define ESP_IDF_VERSION_MAJOR FW_STUB_IDF_MAJOR
#if FW_STUB_IDF_MAJOR >= 5
#define ESP_IDF_VERSION_MINOR 1
#else
#define ESP_IDF_VERSION_MINOR 4
#endif
#define ESP_IDF_VERSION_PATCH 0
#define ESP_IDF_VERSION_VAL(major, minor, patch) ((major << 16) | (minor << 8) | (patch))
#define ESP_IDF_VERSION \
  ESP_IDF_VERSION_VAL(ESP_IDF_VERSION_MAJOR, ESP_IDF_VERSION_MINOR, ESP_IDF_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif
const char* esp_get_idf_version(void);
#ifdef __cplusplus
}
#endif
