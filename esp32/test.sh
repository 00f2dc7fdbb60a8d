#!/usr/bin/env bash
# Host tests of the ESP32 firmware core: configure, build and run ctest twice, once plain and
# once with AddressSanitizer + UBSan. Exits non-zero on any failure. Called by `make test`.
# Build trees: esp32/build (plain, -O2 -g, also builds the virtual node) and esp32/build-asan
# (git-ignored). The sanitizer build compiles only what the tests need, at -O0 -g (about half
# the compile time of -O2 with the sanitizers; they detect the same errors at -O0).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
jobs="${FW_JOBS:-2}"

run() {  # run NAME BUILD_DIR CMAKE_ARGS...
  local name="$1" dir="$2"
  shift 2
  echo "== esp32 firmware: $name build ($dir)"
  if [[ -f "$dir/CMakeCache.txt" ]] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${gen[1]:-Unix Makefiles}" "$dir/CMakeCache.txt"; then
    rm -rf "$dir"  # generator changed
  fi
  cmake -S "$here" -B "$dir" "${gen[@]}" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs")
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
run plain "$here/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFW_SANITIZE=OFF
run "asan+ubsan" "$here/build-asan" -DCMAKE_BUILD_TYPE=Debug -DFW_SANITIZE=ON \
  -DFW_BUILD_VIRTUAL_NODE=OFF
echo "== esp32 firmware: all tests passed (plain and ASan+UBSan)"
