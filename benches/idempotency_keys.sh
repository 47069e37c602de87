#!/bin/bash
# Throughput with idempotency.key=key on, next to off, at 100 B and 1 KiB with unique keys,
# alternated in one run on one broker (BENCHMARKS.md, "Idempotency keys"). Needs a release
# build: cargo build --release -p tally. Writes about 12 GB under /tmp/kbench.
T="$(cd "$(dirname "$0")/.." && pwd)/target/release/tally"
rm -rf /tmp/kbench/data && mkdir -p /tmp/kbench
$T serve --data-dir /tmp/kbench/data --listen 127.0.0.1:19093 --set http.listeners= > /tmp/kbench/serve.log 2>&1 &
sleep 2
for size in 100 1024; do
  for rep in 1 2; do
    for mode in off on; do
      cfg=""; [ $mode = on ] && cfg="--topic-config idempotency.key=key"
      out=$($T --bootstrap 127.0.0.1:19093 bench produce --topic k-$size-$rep-$mode --message-size $size --duration-secs 15 --partitions 4 --unique-keys $cfg --json --no-progress 2>&1 | tail -1)
      echo "$size $rep $mode $out"
    done
  done
done
$T --bootstrap 127.0.0.1:19093 keys k-100-1-on | head -8
pkill -f "serve --data-dir /tmp/kbench"
