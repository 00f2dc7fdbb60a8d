// Stub of Arduino-ESP32's cores/esp32/Arduino.h with the parts of esp32-hal.h,
// esp32-hal-gpio.h, Print.h and HardwareSerial.h the board glue uses.
// Declarations only, for a compile check on the host; signatures from Arduino-ESP32 2.0.x
// (ESP-IDF 4.4) and 3.0.x (ESP-IDF 5.1), identical for what is declared here; never linked or
// run. Like the real header it pulls in the C headers and FreeRTOS; unlike it, it does not
// provide ESP_IDF_VERSION_MAJOR (include <esp_idf_version.h> where it is tested).
#pragma once
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "freertos/FreeRTOS.h"

#ifdef __cplusplus
extern "C" {
#endif

// esp32-hal-gpio.h
#define LOW 0x0
#define HIGH 0x1
#define INPUT 0x01
#define OUTPUT 0x03
#define INPUT_PULLUP 0x05
void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t val);
int digitalRead(uint8_t pin);

// esp32-hal.h
float temperatureRead();
unsigned long micros();
unsigned long millis();
void delay(uint32_t);
void delayMicroseconds(uint32_t us);

#ifdef __cplusplus
}  // extern "C"

// Arduino.h
void setup(void);
void loop(void);
extern "C" void configTime(long gmtOffset_sec, int daylightOffset_sec, const char* server1,
                           const char* server2 = nullptr, const char* server3 = nullptr);
extern "C" bool getLocalTime(struct tm* info, uint32_t ms = 5000);

// Print.h (subset)
class Print {
 public:
  virtual ~Print() {}
  virtual size_t write(uint8_t) = 0;
  size_t printf(const char* format, ...) __attribute__((format(printf, 2, 3)));
  size_t print(const char[]);
  size_t print(int, int = 10);
  size_t print(unsigned long, int = 10);
  size_t println(const char[]);
  size_t println(int, int = 10);
  size_t println(unsigned long, int = 10);
  size_t println(void);
};

// Stream.h (subset)
class Stream : public Print {
 public:
  virtual int available() = 0;
  virtual int read() = 0;
};

// HardwareSerial.h: SERIAL_8N1 from esp32-hal-uart.h; Serial is the UART0 instance when
// ARDUINO_USB_CDC_ON_BOOT is 0 (esp32dev).
#define SERIAL_8N1 0x800001c
class HardwareSerial : public Stream {
 public:
  explicit HardwareSerial(int uart_nr);
  void begin(unsigned long baud, uint32_t config = SERIAL_8N1, int8_t rxPin = -1,
             int8_t txPin = -1, bool invert = false, unsigned long timeout_ms = 20000UL,
             uint8_t rxfifo_full_thrhd = 112);
  void end();
  int available() override;
  int read() override;
  size_t write(uint8_t) override;
  void flush();
};
extern HardwareSerial Serial;

// Esp.h (included by Arduino.h): the chip object; restart() reboots (esp_restart()).
class EspClass {
 public:
  void restart();
};
extern EspClass ESP;
#endif  // __cplusplus
