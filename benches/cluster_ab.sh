#!/usr/bin/env bash
# Replicated throughput of two builds, alternated on this machine, next to one node:
#
#   benches/cluster_ab.sh OLD/target/release/tally NEW/target/release/tally [ROUNDS]
#
# Each round: one node (NEW), then three nodes with RF 3 as OLD, NEW, NEW, OLD, then one node
# again. A run is a fresh `tally dev-cluster` (or `tally serve`) in a scratch directory, a
# topic of 3 partitions, `tally bench produce --topic tp -s 1024 -n $COUNT -p 3`; it prints
# msg/s, p50 and p99 ms, and for clusters the CPU seconds the three nodes used during the run.
# Ports 19092-19094 and 19192-19194 on 127.0.0.1; everything it starts, it stops.
set -euo pipefail
OLD=$1
NEW=$2
ROUNDS=${3:-2}
COUNT=${COUNT:-500000}
SCRATCH=$(mktemp -d)
trap 'pkill -9 -f "serve --data-dir $SCRATCH" 2>/dev/null || true; rm -rf "$SCRATCH"' EXIT

ports_free() {
  while ss -ltn | grep -qE ":1909[2-4] |:1919[2-4] "; do sleep 1; done
}

cpu_of() { # the summed user+system ticks of the processes serving $SCRATCH/$1
  local total=0
  for p in $(pgrep -f "serve --data-dir $SCRATCH/$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

bench() { # prints msg/s, p50 ms, p99 ms
  "$1" bench produce --topic tp -s 1024 -n "$COUNT" -p 3 --bootstrap 127.0.0.1:19092 2>&1 |
    tail -1 | awk '{print $6, $8, $9}'
}

one_node() {
  ports_free
  local dir=$SCRATCH/single
  rm -rf "$dir" && mkdir -p "$dir"
  "$1" serve --data-dir "$dir" --listen 127.0.0.1:19092 --http off >"$SCRATCH/single.log" 2>&1 &
  local pid=$!
  sleep 3
  "$1" topic create tp --partitions 3 --bootstrap 127.0.0.1:19092 >/dev/null
  echo "one-node $(bench "$1")"
  kill "$pid" && wait "$pid" 2>/dev/null || true
}

cluster() {
  ports_free
  local dir=$SCRATCH/cluster
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && exec "$1" dev-cluster --nodes 3 --base-port 19092 --data-dir "$dir" >"$SCRATCH/cluster.log" 2>&1) &
  local pid=$!
  sleep 6
  "$1" topic create tp --partitions 3 --replication-factor 3 --bootstrap 127.0.0.1:19092 >/dev/null
  sleep 2
  local before after line
  before=$(cpu_of cluster)
  line=$(bench "$1")
  after=$(cpu_of cluster)
  echo "$2 $line cpu_s=$(echo "scale=2; ($after - $before) / $(getconf CLK_TCK)" | bc)"
  kill "$pid" 2>/dev/null || true
  sleep 3
  pkill -9 -f "serve --data-dir $dir" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

for _ in $(seq 1 "$ROUNDS"); do
  one_node "$NEW"
  cluster "$OLD" three-nodes-old
  cluster "$NEW" three-nodes-new
  cluster "$NEW" three-nodes-new
  cluster "$OLD" three-nodes-old
  one_node "$NEW"
done
