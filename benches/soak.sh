#!/usr/bin/env bash
# The soak (not in CI): idempotent producers (Tally's client and librdkafka) and a group
# consumer work through the chaos proxy (acknowledgements lost after the write, connections
# reset) while the broker is SIGKILLed and restarted on the same data every 1-3 minutes. At
# the end: `tally audit` finds no range stored twice, and each topic holds exactly the
# messages its producers were told were acknowledged (no loss, no duplicate). The broker's
# RSS, open file descriptors and threads are sampled every minute.
#
#   cargo build --release -p tally -p tally-rdkafka-bench
#   benches/soak.sh                 # 30 minutes
#   SOAK_SECS=180 benches/soak.sh   # a short one
#
# A 30-minute run stores about 40 GB under /tmp; the data directory is removed at the end
# (the logs stay) unless SOAK_KEEP_DATA=1.
#
# Exit status 0 only if the audit is clean and nothing acknowledged is missing or doubled.
set -uo pipefail

SOAK_SECS=${SOAK_SECS:-1800}
TALLY=${TALLY_BIN:-target/release/tally}
RDKAFKA=${RDKAFKA_BENCH_BIN:-target/release/rdkafka-bench}
BROKER=127.0.0.1:${SOAK_BROKER_PORT:-19290}
PROXY=127.0.0.1:${SOAK_PROXY_PORT:-19291}
work=$(mktemp -d /tmp/tally-soak-XXXXXX)
deadline=$((SECONDS + SOAK_SECS))
echo "soak: ${SOAK_SECS} s, work directory $work"

start_broker() {
  local n=$1
  "$TALLY" serve --data-dir "$work/data" --listen "$BROKER" --http 127.0.0.1:0 >"$work/broker-$n.log" 2>&1 &
  echo $! >"$work/broker.pid"
  for _ in $(seq 1 600); do
    grep -q "tally broker ready" "$work/broker-$n.log" && return 0
    sleep 0.1
  done
  echo "broker start $n did not become ready"; cat "$work/broker-$n.log"; exit 2
}

cleanup() {
  kill $(jobs -p) 2>/dev/null
  [ -f "$work/broker.pid" ] && kill -9 "$(cat "$work/broker.pid")" 2>/dev/null
  # A 30-minute soak stores about 40 GB; keep the logs and drop the data unless asked.
  if [ "${SOAK_KEEP_DATA:-0}" != 1 ]; then rm -rf "$work/data"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_broker 1
"$TALLY" chaos-proxy --upstream "$BROKER" --listen "$PROXY" --rewrite-metadata \
  --drop-acks 0.02 --reset 0.005 --seed 7 >"$work/proxy.log" 2>&1 &
proxy=$!
sleep 1
"$TALLY" --bootstrap "$BROKER" topic create soak-tally --partitions 4 >/dev/null
"$TALLY" --bootstrap "$BROKER" topic create soak-rdkafka --partitions 4 >/dev/null

# Producers: back-to-back runs of 20,000 messages until the deadline; each run's JSON report
# says how many were acknowledged (messages - errors).
produce_loop() {
  local name=$1; shift
  while [ $SECONDS -lt $deadline ]; do
    "$@" --json --no-progress >>"$work/$name.jsonl" 2>>"$work/$name.err" || sleep 1
  done
}
produce_loop tally "$TALLY" --bootstrap "$PROXY" bench produce --topic soak-tally -p 4 -s 200 \
  -n 20000 --request-timeout-ms 3000 &
producers=$!
produce_loop rdkafka "$RDKAFKA" produce --bootstrap "$PROXY" --topic soak-rdkafka -p 4 -s 200 \
  -n 20000 &
producers="$producers $!"

# A group consumer, restarted whenever it stops.
(while [ $SECONDS -lt $deadline ]; do
  timeout $((deadline - SECONDS + 1)) "$TALLY" --bootstrap "$PROXY" consume soak-tally \
    --group soak-group --from-beginning >/dev/null 2>>"$work/consumer.err" || true
  sleep 1
done) &
consumer=$!

# The sampler: every minute, the broker's RSS (kB), open descriptors and threads.
echo "elapsed_s rss_kb fds threads" >"$work/samples.txt"
(while [ $SECONDS -lt $deadline ]; do
  sleep 60
  pid=$(cat "$work/broker.pid")
  if [ -d "/proc/$pid" ]; then
    echo "$SECONDS $(ps -o rss= -p "$pid" | tr -d ' ') $(ls "/proc/$pid/fd" | wc -l) \
$(ps -o nlwp= -p "$pid" | tr -d ' ')" >>"$work/samples.txt"
  fi
done) &
sampler=$!

# The killer, in the foreground: SIGKILL and restart every 60-180 s.
kills=0
while true; do
  pause=$((60 + RANDOM % 121))
  [ $((SECONDS + pause)) -ge $deadline ] && break
  sleep $pause
  kill -9 "$(cat "$work/broker.pid")"
  wait "$(cat "$work/broker.pid")" 2>/dev/null
  kills=$((kills + 1))
  start_broker $((kills + 1))
  echo "$(date +%T) broker SIGKILLed and restarted ($kills)"
done
echo "waiting for the producers' last runs"
for pid in $producers; do wait "$pid"; done
kill "$sampler" "$consumer" "$proxy" 2>/dev/null
wait "$consumer" "$proxy" 2>/dev/null

status=0
for topic in soak-tally soak-rdkafka; do
  name=${topic#soak-}
  acked=$(python3 -c '
import json, sys
total = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line)
        total += r["messages"] - r["errors"]
print(total)' "$work/$name.jsonl")
  stored=$("$TALLY" --bootstrap "$BROKER" topic describe "$topic" |
    awk 'NR > 3 { total += $6 - $5 } END { print total }')
  if "$TALLY" --bootstrap "$BROKER" audit "$topic" >"$work/audit-$topic.txt"; then audit=clean; else audit=DUPLICATES; status=1; fi
  if [ "$acked" != "$stored" ] || [ "$acked" -eq 0 ]; then status=1; fi
  echo "$topic: $acked acknowledged, $stored stored, audit $audit"
done
echo "broker kills: $kills"
echo "samples (elapsed s, RSS kB, fds, threads):"
cat "$work/samples.txt"
[ $status -eq 0 ] && echo "soak passed" || echo "soak FAILED (see $work)"
exit $status
