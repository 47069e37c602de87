#!/usr/bin/env bash
# A/B of two `tally` client builds against one running broker, alternating the order each
# round (old new, new old, ...) so writeback of one run does not always land on the same side.
#
#   OLD=/tmp/tally-old NEW=/tmp/tally-new BOOTSTRAP=127.0.0.1:19092 \
#     benches/ab_client.sh 6 -s 1024 -p 8 -n 500000
#
# Prints per run: MB/s, p50/p99/p999 latency, and the client's CPU time (user + sys).
set -euo pipefail
pairs=$1; shift
: "${OLD:?path of the old tally binary}" "${NEW:?path of the new tally binary}"
bootstrap=${BOOTSTRAP:-127.0.0.1:9092}
for round in $(seq 1 "$pairs"); do
  if [ $((round % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for side in $order; do
    bin=$OLD; [ "$side" = new ] && bin=$NEW
    out=$( { /usr/bin/time -f "CPU %U %S" "$bin" bench produce --bootstrap "$bootstrap" \
      --topic "ab-$side-$round-$RANDOM" "$@" --json --no-progress; } 2>&1 )
    SIDE=$side ROUND=$round python3 -c '
import json, os, sys
t = sys.stdin.read().splitlines()
d = json.loads([l for l in t if l.startswith("{")][0])
c = [l for l in t if l.startswith("CPU")][0].split()
l = d["latency"]
print(os.environ["SIDE"], os.environ["ROUND"], "MB/s %.0f" % d["mb_per_sec"],
      "p50 %.1f p99 %.1f p999 %.1f" % (l["p50_ms"], l["p99_ms"], l["p999_ms"]),
      "client cpu %.2f s" % (float(c[1]) + float(c[2])))
' <<<"$out"
  done
done
