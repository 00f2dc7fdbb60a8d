// Stub of ESP-IDF components/esp_event/include/esp_event.h and esp_event_base.h.
// Declarations only, for a compile check on the host; signatures from ESP-IDF v4.4 and v5.1
// (identical for what is declared here); never linked or run.
#pragma once
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ESP_EVENT_DECLARE_BASE(id) extern esp_event_base_t const id
#define ESP_EVENT_DEFINE_BASE(id) esp_event_base_t const id = #id

typedef const char* esp_event_base_t;
typedef void* esp_event_loop_handle_t;
typedef void (*esp_event_handler_t)(void* event_handler_arg, esp_event_base_t event_base,
                                    int32_t event_id, void* event_data);

#define ESP_EVENT_ANY_BASE NULL
#define ESP_EVENT_ANY_ID -1

#ifdef __cplusplus
}
#endif
