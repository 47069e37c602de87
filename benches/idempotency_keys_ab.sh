#!/bin/bash
# Idempotency keys on vs off, for two builds of tally side by side (BENCHMARKS.md,
# "Idempotency keys"): two brokers, and for each size and repetition an off/on pair on the
# first build's broker, then on the second's. Each run a fresh topic, deleted after it (so the
# disk does not fill). Tally's client, 4 partitions, every message its own key.
# usage: benches/idempotency_keys_ab.sh OLD_TALLY NEW_TALLY [REPS] [SECONDS] ["SIZES"]
A=$1; B=$2; REPS=${3:-2}; DUR=${4:-15}; SIZES=${5:-"100 1024"}
pkill -f "serve --data-dir /tmp/kab" ; sleep 1
rm -rf /tmp/kab && mkdir -p /tmp/kab
$A serve --data-dir /tmp/kab/a --listen 127.0.0.1:19093 --set http.listeners= > /tmp/kab/a.log 2>&1 &
$B serve --data-dir /tmp/kab/b --listen 127.0.0.1:19094 --set http.listeners= > /tmp/kab/b.log 2>&1 &
sleep 2
for size in $SIZES; do
  for rep in $(seq 1 $REPS); do
    for who in a b; do
      port=19093; bin=$A; [ $who = b ] && port=19094 && bin=$B
      line="$size $rep $who"
      for mode in off on; do
        cfg=""; [ $mode = on ] && cfg="--topic-config idempotency.key=key"
        r=$($bin --bootstrap 127.0.0.1:$port bench produce --topic k-$size-$rep-$mode --message-size $size --duration-secs $DUR --partitions 4 --unique-keys $cfg --json --no-progress 2>&1 | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["messages_per_sec"]), d["errors"])')
        line="$line $mode $r"
        $bin --bootstrap 127.0.0.1:$port topic delete k-$size-$rep-$mode >/dev/null 2>&1
        sleep 3
      done
      echo "$line" | awk '{printf "%s ratio %.3f\n", $0, $8/$5}'
    done
  done
done
pkill -f "serve --data-dir /tmp/kab"; sleep 1; rm -rf /tmp/kab
