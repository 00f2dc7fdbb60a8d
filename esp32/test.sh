#!/usr/bin/env bash
# Host tests of the ESP32 firmware core: configure, build and run ctest twice, once plain and
# once with AddressSanitizer + UBSan. Exits non-zero on any failure. Called by `make test`.
# Build trees: esp32/build (plain) and esp32/build-asan (git-ignored).
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
  cmake -S "$here" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs")
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
run plain "$here/build" -DFW_SANITIZE=OFF
run "asan+ubsan" "$here/build-asan" -DFW_SANITIZE=ON
echo "== esp32 firmware: all tests passed (plain and ASan+UBSan)"
