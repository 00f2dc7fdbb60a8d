// Stub of ESP-IDF components/esp_timer/include/esp_timer.h.
// Declarations only, for a compile check on the host; signatures from ESP-IDF v4.4 and v5.1
// (identical for what is declared here: both have skip_unhandled_events); never linked or run.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct esp_timer* esp_timer_handle_t;
typedef void (*esp_timer_cb_t)(void* arg);

typedef enum {
  ESP_TIMER_TASK,  // callback is called from the esp_timer task
  ESP_TIMER_MAX,   // (ESP_TIMER_ISR only with CONFIG_ESP_TIMER_SUPPORTS_ISR_DISPATCH_METHOD)
} esp_timer_dispatch_t;

typedef struct {
  esp_timer_cb_t callback;
  void* arg;
  esp_timer_dispatch_t dispatch_method;
  const char* name;
  bool skip_unhandled_events;
} esp_timer_create_args_t;

esp_err_t esp_timer_create(const esp_timer_create_args_t* create_args,
                           esp_timer_handle_t* out_handle);
esp_err_t esp_timer_start_once(esp_timer_handle_t timer, uint64_t timeout_us);
esp_err_t esp_timer_start_periodic(esp_timer_handle_t timer, uint64_t period);
esp_err_t esp_timer_stop(esp_timer_handle_t timer);
esp_err_t esp_timer_delete(esp_timer_handle_t timer);
int64_t esp_timer_get_time(void);

#ifdef __cplusplus
}
#endif
