#!/bin/bash
# What an idle cluster costs, for two builds of tally (BENCHMARKS.md, "Heartbeats per pair of
# nodes"): a fresh three-node dev-cluster, a topic of PARTITIONS partitions with replication
# factor 3, SETTLE seconds to elect and settle, then the CPU time (user + system, from
# /proc/PID/stat) and RSS of each node over SECONDS seconds with nothing produced. Builds are
# alternated (A, B, B, A) ROUNDS times.
# usage: benches/cluster_idle.sh A_TALLY B_TALLY [ROUNDS] [PARTITIONS] [SETTLE] [SECONDS]
A=$1; B=$2; ROUNDS=${3:-1}; PARTITIONS=${4:-1000}; SETTLE=${5:-20}; SECS=${6:-20}
DIR=/tmp/cluster-idle
HZ=$(getconf CLK_TCK)

cpu_ticks() { # utime + stime of a pid
  awk '{print $14 + $15}' "/proc/$1/stat"
}

run() {
  local bin=$1 label=$2
  pkill -9 -f "serve --data-dir $DIR" 2>/dev/null; sleep 1
  rm -rf "$DIR" && mkdir -p "$DIR"
  setsid "$bin" dev-cluster --nodes 3 --base-port 19092 --data-dir "$DIR" > "$DIR.log" 2>&1 &
  sleep 6
  "$bin" --bootstrap 127.0.0.1:19092 topic create idle --partitions "$PARTITIONS" \
    --replication-factor 3 > /dev/null || { echo "$label: topic create failed"; return; }
  sleep "$SETTLE"
  local pids; pids=$(pgrep -f "serve --data-dir $DIR/node-")
  local before=() p
  for p in $pids; do before+=("$(cpu_ticks "$p")"); done
  sleep "$SECS"
  local i=0 line="$label"
  for p in $pids; do
    local used=$(( $(cpu_ticks "$p") - ${before[$i]} ))
    local rss; rss=$(ps -o rss= -p "$p")
    line="$line $(awk -v u="$used" -v hz="$HZ" -v s="$SECS" 'BEGIN{printf "%.1f%%", 100*u/hz/s}') $((rss / 1024))MB"
    i=$((i + 1))
  done
  echo "$line"
  pkill -9 -f "serve --data-dir $DIR" 2>/dev/null; pkill -f "dev-cluster --nodes 3 --base-port 19092" 2>/dev/null
  sleep 2
}

echo "build: CPU of a core and RSS per node, idle, $PARTITIONS partitions RF 3"
for r in $(seq 1 "$ROUNDS"); do
  run "$A" "A"
  run "$B" "B"
  run "$B" "B"
  run "$A" "A"
done
rm -rf "$DIR"
