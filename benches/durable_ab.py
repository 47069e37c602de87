#!/usr/bin/env python3
"""Durable mode (log.flush.interval.messages=1) of two broker builds side by side, with each
build's default mode: 1 KiB, 8 partitions, linger 0, Tally's client or librdkafka, 1 and 4
producers. Four brokers run at once (old and new, default and durable); each round measures
(old, new, new, old) in each mode, so a busy machine weighs on both builds alike.

  benches/durable_ab.py OLD_TALLY NEW_TALLY [--count N] [--rounds R] [--clients tally,rdkafka]

Needs `cargo build --release -p tally -p tally-rdkafka-bench` first (the clients are this
tree's). Prints MB/s per build and mode, durable/default per build, and new/old per mode.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import partition_core as core  # noqa: E402

base = core.base


def cell(old, new, client, producers, count, rounds):
    brokers = {}
    try:
        for build, binary in (("old", old), ("new", new)):
            brokers[(build, "default")] = core.fresh(binary, f"{build}-default")
            brokers[(build, "durable")] = core.fresh(
                binary, f"{build}-durable", ["log.flush.interval.messages=1"])
        args = core.KIB + ["--producers", producers]
        for b in brokers.values():
            base.bench(client, b.addr, "produce", args + ["--count", count // 4, "--topic", "warm"])
        sums = {key: [0, 0.0] for key in brokers}
        n = 0
        for _ in range(rounds):
            for mode in ("durable", "default"):
                for build in ("old", "new", "new", "old"):
                    r = base.bench(client, brokers[(build, mode)].addr, "produce",
                                   args + ["--count", count, "--topic", f"t{n}"])
                    n += 1
                    base.log(f"{client} p={producers} {build} {mode}: "
                             f"{r['bytes'] / r['seconds'] / 1e6:,.0f} MB/s")
                    sums[(build, mode)][0] += r["bytes"]
                    sums[(build, mode)][1] += r["seconds"]
    finally:
        for b in brokers.values():
            core.cleanup(b)
    mb = {f"{build}_{mode}": s[0] / s[1] / 1e6 for (build, mode), s in sums.items()}
    return {
        "client": client, "producers": producers, "mb_s": mb,
        "durable_over_default": {build: mb[f"{build}_durable"] / mb[f"{build}_default"]
                                 for build in ("old", "new")},
        "new_over_old": {mode: mb[f"new_{mode}"] / mb[f"old_{mode}"]
                         for mode in ("default", "durable")},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="tally,rdkafka")
    args = parser.parse_args()
    rows = []
    for producers in (1, 4):
        for client in args.clients.split(","):
            rows.append(cell(args.old, args.new, client, producers, args.count, args.rounds))
    print(json.dumps(rows, indent=2))
    print("| client | producers | old default | old durable | old ratio | new default "
          "| new durable | new ratio | durable new/old |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        m = r["mb_s"]
        print(f"| {r['client']} | {r['producers']} | {m['old_default']:.0f} | "
              f"{m['old_durable']:.0f} | {r['durable_over_default']['old']:.2f} | "
              f"{m['new_default']:.0f} | {m['new_durable']:.0f} | "
              f"{r['durable_over_default']['new']:.2f} | {r['new_over_old']['durable']:.2f} |")


if __name__ == "__main__":
    main()
