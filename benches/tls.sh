#!/bin/bash
# What TLS costs: produce throughput at 1 KiB, 8 partitions, on a PLAINTEXT broker and on an
# SSL broker (and a SASL_SSL one, SCRAM-SHA-512), runs alternated in one run on one machine
# (BENCHMARKS.md, "TLS"). The Tally client is the producer, idempotent, acks=all. Needs a
# release build (cargo build --release -p tally) and openssl. Runs of DURATION seconds (8);
# retention keeps each broker's data under about 1 GB in /tmp/tlsbench.
set -u
T="$(cd "$(dirname "$0")/.." && pwd)/target/release/tally"
W=/tmp/tlsbench
pkill -f "serve --data-dir $W" 2>/dev/null
rm -rf $W && mkdir -p $W && cd $W || exit 1
# An authority and a broker certificate for 127.0.0.1 (as in the README's TLS section).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench authority" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=broker" -keyout broker.key -out broker.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1' > san.ext
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile san.ext -out broker.crt 2>/dev/null
cat broker.crt broker.key > broker.pem
export TALLY_LOG_SEGMENT_BYTES=67108864 TALLY_LOG_RETENTION_BYTES=134217728 \
  TALLY_LOG_RETENTION_CHECK_INTERVAL_MS=1000
$T serve --data-dir $W/plain --listen 127.0.0.1:19101 --http off > plain.log 2>&1 &
$T serve --data-dir $W/ssl --listen SSL://127.0.0.1:19102 --http off \
  --set ssl.keystore.location=$W/broker.pem > ssl.log 2>&1 &
TALLY_SASL_BOOTSTRAP_USERS=bench:bench-pw $T serve --data-dir $W/sasl \
  --listen SASL_SSL://127.0.0.1:19103 --http off \
  --set ssl.keystore.location=$W/broker.pem > sasl.log 2>&1 &
sleep 3
bench() { # $1 mode, $2 rep
  local args=()
  case $1 in
    plain) args=(--bootstrap 127.0.0.1:19101) ;;
    ssl) args=(--bootstrap 127.0.0.1:19102 --security-protocol SSL --ssl-ca-location $W/ca.pem) ;;
    sasl_ssl) args=(--bootstrap 127.0.0.1:19103 --security-protocol SASL_SSL --ssl-ca-location $W/ca.pem
                    --sasl-mechanism SCRAM-SHA-512 --sasl-username bench) ;;
  esac
  TALLY_SASL_PASSWORD=bench-pw $T "${args[@]}" bench produce --topic t-$1-$2 --message-size 1024 \
    --partitions 8 --duration-secs ${DURATION:-8} --json --no-progress 2>&1 | tail -1 |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.0f MB/s p99 %.1f ms" % (r["mb_per_sec"], r["latency"]["p99_ms"]))'
}
for rep in 1 2 3; do
  for mode in plain ssl sasl_ssl; do
    echo "$mode $rep $(bench $mode $rep)"
  done
done
pkill -f "serve --data-dir $W"
