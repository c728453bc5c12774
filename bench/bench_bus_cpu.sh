#!/usr/bin/env bash
# CPU time and context switches per event of each process on the bus, against
# the bare pyzmq loop, read by `perf stat` (task-clock, context-switches).
#
# Why: on a small virtual machine a thread wake-up costs tens of
# microseconds, so latency follows the number of wake-ups an event causes.
# This counts them.  Each side runs twice (EVENTS and 4 x EVENTS events) and
# the difference is divided by the extra events, so start-up cancels out.
#
# Usage: bench/bench_bus_cpu.sh [RATE] [EVENTS] [pinned|unpinned]
#   RATE 0 sends as fast as possible (default 1000 events/s), EVENTS 1000.
# Needs perf (Debian's linux-perf); run from the repository root.
set -euo pipefail
RATE=${1:-1000}
EVENTS=${2:-1000}
MODE=${3:-pinned}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
PIN=()
[ "$MODE" = pinned ] && PIN=(taskset -c 0)
PERF=(perf stat -x, -e task-clock,context-switches)
export PYTHONPATH=$ROOT

# Prints "ms switches" for a perf output file.
read_perf() { grep -E 'task-clock|context-switches' "$1" | cut -d, -f1 | tr '\n' ' '; }

run_bus() {  # N -> lines "sender ...", "daemon ...", "receiver ..."
    local n=$1 dir
    dir=$(mktemp -d /tmp/encbc.XXXX)
    printf '[daemon]\nevent_buffer = 100000\n' >"$dir/conf.toml"
    "${PIN[@]}" "${PERF[@]}" -o "$dir/d" "$PY" -m encored --config "$dir/conf.toml" \
        --runtime-dir "$dir/rt" --log-level WARNING &
    local perf_pid=$!
    for _ in $(seq 100); do [ -S "$dir/rt/requests.ipc" ] && break; sleep 0.1; done
    "${PIN[@]}" "${PERF[@]}" -o "$dir/r" "$PY" "$ROOT/bench/bench_bus.py" \
        --role bus-recv --runtime-dir "$dir/rt" >"$dir/recv.out" &
    local recv=$!
    for _ in $(seq 100); do grep -q READY "$dir/recv.out" && break; sleep 0.05; done
    echo GO | "${PIN[@]}" "${PERF[@]}" -o "$dir/s" "$PY" "$ROOT/bench/bench_bus.py" \
        --role bus-send --runtime-dir "$dir/rt" --rate "$RATE" --events "$n" >/dev/null
    wait "$recv"
    kill -INT "$(pgrep -P "$perf_pid")"  # the daemon; perf then writes its count
    wait "$perf_pid" || true
    echo "sender $(read_perf "$dir/s")"
    echo "daemon $(read_perf "$dir/d")"
    echo "receiver $(read_perf "$dir/r")"
    rm -rf "$dir"
}

run_bare() {
    local n=$1 dir
    dir=$(mktemp -d /tmp/encbc.XXXX)
    mkfifo "$dir/go"
    "${PIN[@]}" "${PERF[@]}" -o "$dir/s" "$PY" "$ROOT/bench/bench_bus.py" --role zmq-send \
        --endpoint "ipc://$dir/x.ipc" --rate "$RATE" --events "$n" <"$dir/go" >/dev/null &
    local send=$!
    exec 7>"$dir/go"
    "${PIN[@]}" "${PERF[@]}" -o "$dir/r" "$PY" "$ROOT/bench/bench_bus.py" --role zmq-recv \
        --endpoint "ipc://$dir/x.ipc" >"$dir/recv.out" &
    local recv=$!
    for _ in $(seq 200); do grep -q READY "$dir/recv.out" && break; sleep 0.05; done
    echo GO >&7
    wait "$recv"
    exec 7>&-
    wait "$send"
    echo "sender $(read_perf "$dir/s")"
    echo "receiver $(read_perf "$dir/r")"
    rm -rf "$dir"
}

per_event() {  # two outputs of run_* -> a table of per-event figures
    "$PY" - "$1" "$2" "$3" "$4" <<'EOF'
import sys
label, small, large, extra = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
a = {l.split()[0]: l.split()[1:] for l in small.splitlines()}
b = {l.split()[0]: l.split()[1:] for l in large.splitlines()}
total_us = total_cs = 0.0
for name in a:
    us = (float(b[name][0]) - float(a[name][0])) * 1000 / extra
    cs = (int(b[name][1]) - int(a[name][1])) / extra
    total_us += us
    total_cs += cs
    print(f"| {label} | {name} | {us:.1f} | {cs:.1f} |")
print(f"| {label} | all | {total_us:.1f} | {total_cs:.1f} |")
EOF
}

echo "# $MODE, $RATE events/s (0: full speed), $EVENTS and $((4 * EVENTS)) events"
echo
echo "| path | process | CPU µs per event | context switches per event |"
echo "| --- | --- | ---: | ---: |"
per_event encored "$(run_bus "$EVENTS")" "$(run_bus $((4 * EVENTS)))" $((3 * EVENTS))
per_event pyzmq "$(run_bare "$EVENTS")" "$(run_bare $((4 * EVENTS)))" $((3 * EVENTS))
