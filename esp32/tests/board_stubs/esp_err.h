// Stub of ESP-IDF components/esp_common/include/esp_err.h.
// Declarations only, for a compile check on the host; signatures from ESP-IDF v4.4 and v5.1
// (identical for what is declared here); never linked or run.
#pragma once
#include <stdint.h>

typedef int esp_err_t;

#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_NO_MEM 0x101
#define ESP_ERR_INVALID_ARG 0x102
#define ESP_ERR_INVALID_STATE 0x103

#ifdef __cplusplus
extern "C" {
#endif
const char* esp_err_to_name(esp_err_t code);
#ifdef __cplusplus
}
#endif
