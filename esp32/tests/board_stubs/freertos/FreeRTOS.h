// Stub of ESP-IDF's FreeRTOS.h with the Xtensa port types (portmacro.h, projdefs.h) and the
// spinlock type (soc/spinlock.h / spinlock.h).
// Declarations only, for a compile check on the host; signatures from ESP-IDF v4.4 and v5.1
// (FreeRTOS-Kernel 10.4.3, Xtensa port; identical for what is declared here); never linked or run.
#pragma once
#define INC_FREERTOS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// portmacro.h (Xtensa)
typedef uint8_t StackType_t;
typedef int BaseType_t;
typedef unsigned int UBaseType_t;
typedef uint32_t TickType_t;
#define portMAX_DELAY (TickType_t)0xffffffffUL

// projdefs.h
#define pdFALSE ((BaseType_t)0)
#define pdTRUE ((BaseType_t)1)
#define pdPASS (pdTRUE)
#define pdFAIL (pdFALSE)

// spinlock.h: portMUX_TYPE and the SMP critical sections
typedef struct {
  volatile uint32_t owner;
  volatile uint32_t count;
} spinlock_t;
#define SPINLOCK_FREE 0xB33FFFFF
#define SPINLOCK_INITIALIZER {.owner = SPINLOCK_FREE, .count = 0}

typedef spinlock_t portMUX_TYPE;
#define portMUX_INITIALIZER_UNLOCKED SPINLOCK_INITIALIZER

// static inline in the real portmacro.h; plain declarations here (never linked).
void vPortEnterCritical(portMUX_TYPE* mux);
void vPortExitCritical(portMUX_TYPE* mux);
#define portENTER_CRITICAL(mux) vPortEnterCritical(mux)
#define portEXIT_CRITICAL(mux) vPortExitCritical(mux)
#define portENTER_CRITICAL_ISR(mux) vPortEnterCritical(mux)
#define portEXIT_CRITICAL_ISR(mux) vPortExitCritical(mux)

#ifdef __cplusplus
}
#endif
