// Stub of Arduino-ESP32's libraries/Preferences/src/Preferences.h (NVS key-value store).
// Declarations only, for a compile check on the host; signatures from Arduino-ESP32 2.0.x
// (ESP-IDF 4.4) and 3.0.x (ESP-IDF 5.1), identical for what is declared here (the String
// overloads are omitted); never linked or run.
#pragma once
#include "Arduino.h"

class Preferences {
 protected:
  uint32_t _handle;
  bool _started;
  bool _readOnly;

 public:
  Preferences();
  ~Preferences();

  bool begin(const char* name, bool readOnly = false, const char* partition_label = NULL);
  void end();

  bool clear();
  bool remove(const char* key);

  size_t putUInt(const char* key, uint32_t value);
  size_t putULong(const char* key, uint32_t value);
  size_t putLong64(const char* key, int64_t value);
  size_t putULong64(const char* key, uint64_t value);
  size_t putBytes(const char* key, const void* value, size_t len);

  bool isKey(const char* key);
  uint32_t getUInt(const char* key, uint32_t defaultValue = 0);
  uint32_t getULong(const char* key, uint32_t defaultValue = 0);
  int64_t getLong64(const char* key, int64_t defaultValue = 0);
  uint64_t getULong64(const char* key, uint64_t defaultValue = 0);
  size_t getBytesLength(const char* key);
  size_t getBytes(const char* key, void* buf, size_t maxLen);
  size_t freeEntries();
};
