#!/usr/bin/env bash
# Figures for the note (benchmark, not a test): instructions per sample on the firmware hot
# path (valgrind --tool=callgrind, run with N samples minus a run with 0, divided by N),
# static RAM of the default configuration (`size`), and heap allocations after init.
# Goal: <= 1,000 instructions per sample, 0 heap allocations after init, <= 32 KiB static RAM.
# usage: bash bench/firmware/run.sh [N]    (default N = 20000)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
core="$root/esp32/core"
out="$root/esp32/build-bench"  # git-ignored (esp32/build*/)
n="${1:-20000}"
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)"; exit 1; }

srcs=("$core"/status.cpp "$core"/encoder.cpp "$core"/seq_counter.cpp "$core"/event_clock.cpp "$core"/profiles.cpp)
ir_total() {  # callgrind total instructions of: ir_total OUTFILE CMD...
  local f="$1"
  shift
  valgrind --tool=callgrind --callgrind-out-file="$f" "$@" >/dev/null 2>&1
  awk '/^totals:/ {print $2}' "$f"
}

echo "# firmware hot-path bench ($(date -u +%Y-%m-%dT%H:%MZ), $(g++ --version | head -1), $(uname -m))"
for opt in O2 Os; do
  bin="$out/bench_hot_path_$opt"
  g++ -std=c++17 -"$opt" -DNDEBUG -Wall -Wextra -Werror -Wno-mismatched-new-delete \
    -I"$core" "$here/bench_hot_path.cpp" "${srcs[@]}" -Wl,--wrap=malloc -o "$bin"
  for mode in temp1 femto-vib3 occupancy5; do
    base=$(ir_total "$out/cg.$opt.$mode.0" "$bin" "$mode" 0)
    full=$(ir_total "$out/cg.$opt.$mode.n" "$bin" "$mode" "$n")
    allocs=$("$bin" "$mode" "$n" | sed -n 's/.*heap_allocs_after_init=\([0-9]*\).*/\1/p')
    awk -v b="$base" -v f="$full" -v n="$n" -v m="$mode" -v o="$opt" -v a="$allocs" \
      'BEGIN { printf "instructions/sample  -%s %-11s %7.1f   (N=%d, heap allocs after init: %s)\n", o, m, (f-b)/n, n, a }'
  done
done

echo "# static RAM, default configuration (Node<> = outbox 128, held 32, samples 16, window 64, 6 channels)"
g++ -std=c++17 -Os -c -I"$core" "$here/node_instance.cpp" -o "$out/node_instance.o"
for s in "${srcs[@]}"; do g++ -std=c++17 -Os -c -I"$core" "$s" -o "$out/$(basename "$s" .cpp).o"; done
size "$out/node_instance.o" "$out"/status.o "$out"/encoder.o "$out"/seq_counter.o "$out"/event_clock.o "$out"/profiles.o
size "$out/node_instance.o" "$out"/status.o "$out"/encoder.o "$out"/seq_counter.o "$out"/event_clock.o "$out"/profiles.o |
  awk 'NR > 1 { d += $2; b += $3 } END { printf "static RAM (.data + .bss of node instance + core objects): %d bytes = %.1f KiB (goal <= 32 KiB)\n", d + b, (d + b) / 1024 }'
echo "(x86-64 host objects; on the ESP32, pointers and size_t are 4 bytes, so the board figure is a bit lower)"
