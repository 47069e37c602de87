#!/usr/bin/env python3
"""The partition-core measurements (issue: one apply path, writers off the runtime, group
commit). Prints a JSON summary and Markdown tables; BENCHMARKS.md quotes them by hand.

  latency   1 KiB, 8 partitions, 1 producer, acks=all, idempotent, linger 0: a full-speed run
            finds the sustained maximum, then three runs paced at half of it (p50/p99/p99.9).
  durable   log.flush.interval.messages=1 against the default, 1 KiB, 8 partitions, 1 and 4
            producers, Tally client and librdkafka, interleaved (default, durable, durable,
            default) on one broker each; `dd bs=1M conv=fdatasync` of the same volume in the
            same run; the durable mode's p99 at half its own maximum.
  ab        the broker of another build (--old-tally) against this one, 100 B and 1 KiB
            produce, interleaved (old, new, new, old) twice, same client binary.
  sustained 4 GiB of 1 KiB, idempotent, 8 partitions: MB/s and p99.

Usage: benches/partition_core.py [--only latency|durable|ab|sustained ...] [--old-tally PATH]
Needs `cargo build --release -p tally -p tally-rdkafka-bench` first.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402

ROOT = base.ROOT
DATA = os.path.join(ROOT, "target", "bench-core")


# With --pin, the broker runs on CPU 0 and every client on CPU 1, so the two do not preempt
# each other (on two shared cores that contention, not the broker, makes most of the tail).
PIN = False


class Broker(base.Broker):
    """`tally serve` from a chosen binary."""

    def __init__(self, binary, data_dir, sets=()):
        super().__init__(data_dir, sets)
        self.binary = binary
        # Old commits have no --http; which flags a binary takes is in its --help.
        help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
        self.HTTP_ARGS = ["--http", "127.0.0.1:0"] if "--http" in help_text else []

    def start(self):
        saved, base.TALLY = base.TALLY, self.binary
        try:
            super().start()
        finally:
            base.TALLY = saved
        if PIN:
            # Every thread, and so every thread they start later (writers of new topics).
            subprocess.run(["taskset", "-a", "-p", "-c", "0", str(self.proc.pid)],
                           check=True, capture_output=True)
        return self


_bench = base.bench


def pinned_bench(client, addr, mode, args):
    if not PIN:
        return _bench(client, addr, mode, args)
    saved = (base.TALLY, base.RDKAFKA)
    base.TALLY = f"{saved[0]}-pinned"
    base.RDKAFKA = f"{saved[1]}-pinned"
    for real, wrapper in zip(saved, (base.TALLY, base.RDKAFKA)):
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec taskset -c 1 {real} "$@"\n')
        os.chmod(wrapper, 0o755)
    try:
        return _bench(client, addr, mode, args)
    finally:
        base.TALLY, base.RDKAFKA = saved


base.bench = pinned_bench


def fresh(binary, name, sets=()):
    run_dir = os.path.join(DATA, name)
    shutil.rmtree(run_dir, ignore_errors=True)
    return Broker(binary, os.path.join(run_dir, "data"), sets).start()


def cleanup(broker):
    broker.stop()
    shutil.rmtree(os.path.dirname(broker.data_dir), ignore_errors=True)


def lat(r, key):
    return (r.get("latency") or {}).get(key)


KIB = ["--message-size", 1024, "--partitions", 8, "--linger-ms", 0]


def latency(binary, sets=(), runs=3, secs=10):
    broker = fresh(binary, "latency", sets)
    try:
        base.bench("tally", broker.addr, "produce", KIB + ["--count", 100_000, "--topic", "warm"])
        full = base.bench("tally", broker.addr, "produce",
                          KIB + ["--duration-secs", secs, "--topic", "full"])
        rate = int(full["messages_per_sec"] / 2)
        halves = []
        for i in range(runs):
            halves.append(base.bench("tally", broker.addr, "produce",
                                     KIB + ["--rate", rate, "--duration-secs", secs,
                                            "--topic", f"half-{i}"]))
    finally:
        cleanup(broker)
    return {"max_msgs_per_s": full["messages_per_sec"], "rate": rate,
            "half": [{"msgs_per_s": h["messages_per_sec"], "p50": lat(h, "p50_ms"),
                      "p99": lat(h, "p99_ms"), "p999": lat(h, "p999_ms"),
                      "max": lat(h, "max_ms")} for h in halves]}


def durable(binary, count):
    rows = []
    for producers in (1, 4):
        for client in ("tally", "rdkafka"):
            sums = {"default": [0, 0.0], "durable": [0, 0.0]}
            brokers = {"default": fresh(binary, "default"),
                       "durable": fresh(binary, "durable", ["log.flush.interval.messages=1"])}
            try:
                for mode in ("default", "durable"):
                    base.bench(client, brokers[mode].addr, "produce",
                               KIB + ["--count", count // 4, "--producers", producers,
                                      "--topic", "warm"])
                for i, mode in enumerate(["default", "durable", "durable", "default"] * 2):
                    r = base.bench(client, brokers[mode].addr, "produce",
                                   KIB + ["--count", count, "--producers", producers,
                                          "--topic", f"t{i}"])
                    base.log(f"durable: {client} producers={producers} {mode}: "
                             f"{r['messages_per_sec']:,.0f} msg/s")
                    sums[mode][0] += r["bytes"]
                    sums[mode][1] += r["seconds"]
            finally:
                for b in brokers.values():
                    cleanup(b)
            d = sums["default"][0] / sums["default"][1] / 1e6
            s = sums["durable"][0] / sums["durable"][1] / 1e6
            rows.append({"producers": producers, "client": client, "default_mb_s": d,
                         "durable_mb_s": s, "ratio": s / d})
    path = os.path.join(DATA, "dd-sync")
    os.makedirs(DATA, exist_ok=True)
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=1024",
                    "conv=fdatasync"], check=True, capture_output=True)
    dd = 1024 * 1024 * 1024 / (time.monotonic() - t0) / 1e6
    os.remove(path)
    return {"rows": rows, "dd_fdatasync_mb_s": dd,
            "latency": latency(binary, ["log.flush.interval.messages=1"], runs=1)}


def ab(old, new, pairs=2):
    rows = []
    for size, count in ((100, 2_000_000), (1024, 500_000)):
        totals = {"old": [0, 0.0], "new": [0, 0.0]}
        brokers = {"old": fresh(old, "old"), "new": fresh(new, "new")}
        try:
            args = ["--message-size", size, "--partitions", 8]
            for which in ("old", "new"):
                base.bench("tally", brokers[which].addr, "produce",
                           args + ["--count", count // 4, "--topic", "warm"])
            for i, which in enumerate(["old", "new", "new", "old"] * pairs):
                r = base.bench("tally", brokers[which].addr, "produce",
                               args + ["--count", count, "--topic", f"t{i}"])
                base.log(f"ab: {size} B {which}: {r['messages_per_sec']:,.0f} msg/s")
                totals[which][0] += r["messages"]
                totals[which][1] += r["seconds"]
        finally:
            for b in brokers.values():
                cleanup(b)
        o = totals["old"][0] / totals["old"][1]
        n = totals["new"][0] / totals["new"][1]
        rows.append({"size": size, "old_msgs_per_s": o, "new_msgs_per_s": n, "ratio": n / o})
    return rows


def sustained(binary):
    broker = fresh(binary, "sustained")
    try:
        r = base.bench("tally", broker.addr, "produce",
                       KIB + ["--count", 4 * 1024 * 1024, "--topic", "sustained"])
    finally:
        cleanup(broker)
    return {"mb_s": r["bytes"] / r["seconds"] / 1e6, "p99": lat(r, "p99_ms"),
            "p999": lat(r, "p999_ms")}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append",
                        choices=["latency", "durable", "ab", "sustained"])
    parser.add_argument("--tally", default=base.TALLY)
    parser.add_argument("--old-tally", help="broker binary of the build to compare with")
    parser.add_argument("--durable-count", type=int, default=200_000)
    parser.add_argument("--pin", action="store_true",
                        help="broker on CPU 0, clients on CPU 1")
    args = parser.parse_args()
    global PIN
    PIN = args.pin
    only = args.only or ["latency", "durable", "sustained"] + (["ab"] if args.old_tally else [])
    out = {"machine": base.machine(), "pinned": PIN}
    if "latency" in only:
        out["latency"] = latency(args.tally)
    if "durable" in only:
        out["durable"] = durable(args.tally, args.durable_count)
    if "ab" in only:
        out["ab"] = ab(args.old_tally, args.tally)
    if "sustained" in only:
        out["sustained"] = sustained(args.tally)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
