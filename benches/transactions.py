#!/usr/bin/env python3
"""Transactions against the idempotent producer without them (issue: transactions): Tally's
client, 100 B messages, 4 partitions, 1 producer, linger 5 ms, on one broker; transactions of
100 and of 1,000 messages; runs interleaved (plain, t100, t1000, t1000, t100, plain) twice.
Prints a JSON summary and a Markdown table; BENCHMARKS.md quotes it by hand.

Usage: benches/transactions.py [--count N]
Needs `cargo build --release -p tally` first.
"""

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402

DATA = os.path.join(base.ROOT, "target", "bench-txn")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    shutil.rmtree(DATA, ignore_errors=True)
    broker = base.Broker(os.path.join(DATA, "data")).start()
    cells = {"plain": None, "100": 100, "1000": 1000}
    runs = {k: [] for k in cells}
    try:
        order = ["plain", "100", "1000", "1000", "100", "plain"] * 2
        for i, cell in enumerate(order):
            extra = [] if cells[cell] is None else ["--transaction-messages", cells[cell]]
            r = base.bench("tally", broker.addr, "produce",
                           ["--topic", f"txn-{i}", "-p", 4, "-s", args.size,
                            "-n", args.count] + extra)
            runs[cell].append(r["messages_per_sec"])
            print(f"{cell:>5}: {r['messages_per_sec']:,.0f} msg/s", file=sys.stderr)
    finally:
        broker.stop()
    summary = {"machine": base.machine(), "count": args.count, "size": args.size, "cells": {}}
    for cell, per_txn in cells.items():
        mean = sum(runs[cell]) / len(runs[cell])
        summary["cells"][cell] = {
            "msgs_per_s": mean,
            "runs": runs[cell],
            "commits_per_s": None if per_txn is None else mean / per_txn,
        }
    print(json.dumps(summary, indent=1))
    plain = summary["cells"]["plain"]["msgs_per_s"]
    print("| producer | msg/s (mean of 4) | runs | commits/s | vs. no transactions |")
    print("|---|---:|---|---:|---:|")
    for cell, label in [("plain", "idempotent, no transactions"),
                        ("100", "transactions of 100"), ("1000", "transactions of 1,000")]:
        c = summary["cells"][cell]
        runs_txt = ", ".join(f"{r / 1000:,.0f} k" for r in c["runs"])
        commits = "" if c["commits_per_s"] is None else f"{c['commits_per_s']:,.0f}"
        print(f"| {label} | {c['msgs_per_s']:,.0f} | {runs_txt} | {commits} | "
              f"{c['msgs_per_s'] / plain:.2f} |")


if __name__ == "__main__":
    main()
