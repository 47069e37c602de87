#!/usr/bin/env python3
"""Tally's benchmark matrix. Each run gets a fresh broker on a fresh data directory, so the
broker's CPU time and peak memory belong to that run alone. Idempotence on and off are
interleaved (on, off, off, on) so drift on this shared machine hits both alike; the ratio is
taken from the sums. The generated tables replace the part of BENCHMARKS.md between
<!-- bench:begin --> and <!-- bench:end -->; the analysis around them is written by hand.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TALLY = os.path.join(ROOT, "target", "release", "tally")
RDKAFKA = os.path.join(ROOT, "target", "release", "rdkafka-bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Broker:
    """A `tally serve` on a free loopback port."""

    # Brokers run side by side here; binaries built before the HTTP listener (the old side
    # of an A/B) set this to [].
    HTTP_ARGS = ["--http", "127.0.0.1:0"]

    def __init__(self, data_dir, sets=()):
        self.data_dir = data_dir
        self.sets = list(sets)
        self.proc = None
        self.addr = None
        self.ready_seconds = None

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = os.path.join(os.path.dirname(self.data_dir), "broker.log")
        args = [TALLY, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"] + self.HTTP_ARGS
        for s in self.sets:
            args += ["--set", s]
        logf = open(self.log_path, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, RUST_LOG="info"))
        deadline = t0 + 600
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                text = f.read()
            m = re.search(r"tally broker ready listen=(\S+)", text)
            if m:
                self.ready_seconds = time.monotonic() - t0
                self.addr = m.group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("broker exited:\n" + text)
            time.sleep(0.005)
        raise RuntimeError("broker not ready in 600 s")

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill9()


def bench(client, addr, mode, args):
    binary = TALLY if client == "tally" else RDKAFKA
    cmd = [binary, "bench", mode] if client == "tally" else [binary, mode]
    cmd += ["--bootstrap", addr, "--json", "--no-progress"] + [str(a) for a in args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "rustc": rustc,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


class Runner:
    def __init__(self, root, quick):
        self.root = root
        self.quick = quick
        self.n = 0

    def fresh(self, sets=()):
        self.n += 1
        run_dir = os.path.join(self.root, f"run-{self.n}")
        shutil.rmtree(run_dir, ignore_errors=True)
        return Broker(os.path.join(run_dir, "data"), sets)

    def cleanup(self, broker):
        broker.stop()
        shutil.rmtree(os.path.dirname(broker.data_dir), ignore_errors=True)

    def measured(self, client, mode, args):
        """One bench on a fresh broker, with the broker's CPU and peak RSS."""
        broker = self.fresh().start()
        try:
            cpu0 = broker.cpu_seconds()
            result = bench(client, broker.addr, mode, args)
            result["broker_cpu_s"] = broker.cpu_seconds() - cpu0
            result["broker_peak_rss_mib"] = broker.peak_rss_mib()
        finally:
            self.cleanup(broker)
        return result


# Each cell runs (on, off, off, on) this many times after its warm-up.
PAIRS_HALF = 2


def count_for(size, quick):
    if quick:
        return 20_000
    # About 200 MB (100 B) and 500 MB (1 KiB) per run: a few seconds each.
    return 2_000_000 if size == 100 else 500_000


def fmt_ms(r, key):
    lat = r.get("latency") or {}
    return f"{lat[key]:.2f}" if key in lat else "-"


def matrix(runner, sizes, partitions_list, producers_list, clients):
    """Per cell one fresh broker: a warm-up run, then idempotence on and off interleaved, each
    run on its own topic. The broker's CPU is taken per run; its peak RSS is the cell's."""
    rows = []
    for size in sizes:
        for partitions in partitions_list:
            for producers in producers_list:
                for client in clients:
                    count = count_for(size, runner.quick)
                    results = {"on": [], "off": []}
                    broker = runner.fresh().start()
                    try:
                        order = ["warm-up"] + ["on", "off", "off", "on"] * PAIRS_HALF
                        for i, idem in enumerate(order):
                            args = ["--message-size", size, "--count", count,
                                    "--partitions", partitions, "--producers", producers,
                                    "--topic", f"bench-{i}"]
                            if idem == "off":
                                args.append("--no-idempotence")
                            log(f"matrix: {client} size={size} partitions={partitions} "
                                f"producers={producers} idempotence={idem}")
                            cpu0 = broker.cpu_seconds()
                            result = bench(client, broker.addr, "produce", args)
                            result["broker_cpu_s"] = broker.cpu_seconds() - cpu0
                            if idem != "warm-up":
                                results[idem].append(result)
                        for r in results["on"] + results["off"]:
                            r["broker_peak_rss_mib"] = broker.peak_rss_mib()
                    finally:
                        runner.cleanup(broker)
                    rows.append((size, partitions, producers, client, results))
    return rows


def summarise(runs):
    msgs = sum(r["messages"] for r in runs)
    secs = sum(r["seconds"] for r in runs)
    bytes_ = sum(r["bytes"] for r in runs)
    cpu = sum(r["broker_cpu_s"] for r in runs)
    return {
        "msgs_per_s": msgs / secs,
        "mb_per_s": bytes_ / secs / 1e6,
        "cpu_s_per_gb": cpu / (bytes_ / 1e9),
        "rss": max(r["broker_peak_rss_mib"] for r in runs),
        "p99": max((r.get("latency") or {}).get("p99_ms", 0) for r in runs),
        "errors": sum(r["errors"] for r in runs),
    }


def matrix_table(rows):
    out = ["| size | partitions | producers | client | idempotent msg/s | MB/s | non-idempotent msg/s | on/off ratio | broker CPU s/GB (on) | broker peak RSS MiB | p99 ms (on) | errors |",
           "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = []
    for size, partitions, producers, client, results in rows:
        on, off = summarise(results["on"]), summarise(results["off"])
        ratio = on["msgs_per_s"] / off["msgs_per_s"]
        ratios.append(ratio)
        out.append(f"| {size} B | {partitions} | {producers} | {client} | {on['msgs_per_s']:,.0f} | "
                   f"{on['mb_per_s']:.1f} | {off['msgs_per_s']:,.0f} | {ratio:.3f} | "
                   f"{on['cpu_s_per_gb']:.2f} | {max(on['rss'], off['rss']):.0f} | "
                   f"{on['p99']:.2f} | {on['errors'] + off['errors']} |")
    return "\n".join(out), ratios


def raw_disk(root, mib, quick):
    path = os.path.join(root, "raw-write")
    results = {}
    for label, extra in (("page cache (no sync)", []), ("fdatasync at the end", ["conv=fdatasync"])):
        subprocess.run(["sync"], check=True)
        t0 = time.monotonic()
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}"] + extra,
                       check=True, capture_output=True)
        secs = time.monotonic() - t0
        results[label] = mib * 1024 * 1024 / secs / 1e6
        os.remove(path)
    return results


def drop_caches():
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def recovery(runner, gib_list, quick):
    rows = []
    for gib in gib_list:
        size = 1024
        count = 5_000 if quick else int(gib * 1024 * 1024 * 1024 / size)
        broker = runner.fresh().start()
        log(f"recovery: writing {gib} GiB")
        bench("tally", broker.addr, "produce",
              ["--message-size", size, "--count", count, "--partitions", 4, "--topic", "bench"])
        for how in ("SIGKILL", "clean shutdown"):
            if how == "SIGKILL":
                broker.kill9()
            else:
                broker.stop()
            cold = drop_caches()
            broker.start()
            with open(broker.log_path) as f:
                scanned = sum(int(m) for m in re.findall(r"scanned_bytes=(\d+)", f.read()))
            rows.append((gib, how, broker.ready_seconds, cold, scanned))
        runner.cleanup(broker)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--data-root", default=os.path.join(ROOT, "target", "bench-data"))
    parser.add_argument("--skip", action="append", default=[],
                        choices=["matrix", "latency", "sustained", "recovery"])
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tally",
                        "-p", "tally-rdkafka-bench"], cwd=ROOT, check=True)
    os.makedirs(args.data_root, exist_ok=True)
    runner = Runner(args.data_root, args.quick)
    info = machine()
    sections = [
        f"Measured {info['date']} on {info['cores']} cores ({info['cpu']}), "
        f"{info['memory_gib']} GiB memory, Linux {info['kernel']}, commit {info['commit']}, "
        f"{info['rustc']}. Client and broker share the machine. Command: "
        f"`benches/run.sh{' --quick' if args.quick else ''}`.",
    ]
    summary = {}

    if "matrix" not in args.skip:
        rows = matrix(runner, [100, 1024], [1, 8], [1, 4], ["tally", "rdkafka"])
        table, ratios = matrix_table(rows)
        summary["ratio_min"] = min(ratios)
        summary["ratio_mean"] = sum(ratios) / len(ratios)
        best = {}
        for size, partitions, producers, client, results in rows:
            s = summarise(results["on"])
            key = (size, client)
            if key not in best or s["msgs_per_s"] > best[key][0]:
                best[key] = (s["msgs_per_s"], partitions, producers)
        summary["best"] = best
        sections.append(
            "### Produce throughput: idempotence on and off\n\n"
            "Each cell: one fresh broker; a warm-up run, then `produce` with `--message-size S "
            "--count N --partitions P --producers Q`, idempotence on four times and off four "
            "times, interleaved (on, off, off, on, on, off, off, on), each run on its own topic; "
            f"N = {count_for(100, args.quick):,} (100 B) or {count_for(1024, args.quick):,} (1 KiB). "
            "Defaults otherwise: acks=all, linger.ms=5, batch.size=262144, no compression, at most "
            "5 requests in flight per connection with idempotence on or off (librdkafka's default "
            "without idempotence would be 1,000,000, which measures something else). "
            "msg/s over the four runs; broker CPU is user+system seconds of the broker process per GB "
            "of values written; peak RSS is the broker's VmHWM.\n\n" + table +
            f"\n\nIdempotence on/off throughput ratio: mean {summary['ratio_mean']:.3f}, "
            f"lowest {summary['ratio_min']:.3f}.")

    if "latency" not in args.skip:
        lines = ["| client | sustained max msg/s | rate asked | msg/s | p50 ms | p99 ms | p99.9 ms | max ms |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|"]
        secs = 2 if args.quick else 15
        for client in ("tally", "rdkafka"):
            base = ["--message-size", 1024, "--partitions", 8, "--topic", "bench", "--linger-ms", 0]
            full = runner.measured(client, "produce", base + ["--duration-secs", secs])
            rate = int(full["messages_per_sec"] / 2)
            half = runner.measured(client, "produce", base + ["--rate", rate, "--duration-secs", secs])
            lines.append(f"| {client} | {full['messages_per_sec']:,.0f} | {rate:,} | "
                         f"{half['messages_per_sec']:,.0f} | {fmt_ms(half, 'p50_ms')} | "
                         f"{fmt_ms(half, 'p99_ms')} | {fmt_ms(half, 'p999_ms')} | {fmt_ms(half, 'max_ms')} |")
            summary[f"p99_half_{client}"] = (half.get("latency") or {}).get("p99_ms")
        e2e = runner.measured("tally", "end-to-end",
                              ["--message-size", 1024, "--partitions", 8, "--topic", "bench",
                               "--linger-ms", 0, "--count", 20_000 if args.quick else 200_000,
                               "--rate", 20_000])
        sections.append(
            "### Latency at half the maximum throughput\n\n"
            f"1 KiB messages, 8 partitions, 1 producer, acks=all, idempotent, linger.ms=0. First "
            f"a full-speed `produce` run of {secs} s finds the sustained maximum; then a run "
            f"paced with `--rate` at half of it for {secs} s. Latency is send to "
            "acknowledgement.\n\n" + "\n".join(lines) +
            f"\n\nEnd-to-end (Tally client, same settings, 20,000 msg/s paced, send to "
            f"receipt by a consumer): p50 {fmt_ms(e2e, 'p50_ms')} ms, p99 {fmt_ms(e2e, 'p99_ms')} ms, "
            f"p99.9 {fmt_ms(e2e, 'p999_ms')} ms, max {fmt_ms(e2e, 'max_ms')} ms.")

    if "sustained" not in args.skip:
        mib = 64 if args.quick else 4096
        count = mib * 1024
        rounds = 2
        lines = ["| round | `dd` page cache MB/s | `dd` + fdatasync MB/s | Tally MB/s | Tally broker CPU s | Tally p99 ms |",
                 "|---:|---:|---:|---:|---:|---:|"]
        totals = {"dd": 0.0, "dd_sync": 0.0, "tally": 0.0}
        for r in range(1, rounds + 1):
            log(f"sustained: round {r}")
            disk = raw_disk(args.data_root, mib, args.quick)
            subprocess.run(["sync"], check=True)
            run = runner.measured("tally", "produce", ["--message-size", 1024, "--count", count,
                                                       "--partitions", 8, "--topic", "bench"])
            subprocess.run(["sync"], check=True)
            rate = run["bytes"] / run["seconds"] / 1e6
            dd, dd_sync = disk["page cache (no sync)"], disk["fdatasync at the end"]
            totals["dd"] += dd
            totals["dd_sync"] += dd_sync
            totals["tally"] += rate
            lines.append(f"| {r} | {dd:.0f} | {dd_sync:.0f} | {rate:.0f} | "
                         f"{run['broker_cpu_s']:.1f} | {fmt_ms(run, 'p99_ms')} |")
        mean = {k: v / rounds for k, v in totals.items()}
        summary["disk_ratio_page_cache"] = mean["tally"] / mean["dd"]
        summary["disk_ratio_fdatasync"] = mean["tally"] / mean["dd_sync"]
        lines.append(f"| mean | {mean['dd']:.0f} | {mean['dd_sync']:.0f} | {mean['tally']:.0f} | | |")
        sections.append(
            f"### Sustained write: {mib} MiB next to the raw disk\n\n"
            f"Each round: `dd if=/dev/zero bs=1M count={mib}` into the page cache, the same with "
            f"`conv=fdatasync`, then `tally bench produce` of {mib} MiB of 1 KiB idempotent "
            "messages (8 partitions, 1 producer) on a fresh broker, with `sync` between steps. "
            "Tally, like Kafka, acknowledges from the page cache, so its like-for-like comparison "
            "is `dd` without sync.\n\n" + "\n".join(lines) +
            f"\n\nTally / `dd` page cache: {summary['disk_ratio_page_cache']:.2f}; "
            f"Tally / `dd` + fdatasync: {summary['disk_ratio_fdatasync']:.2f}.")

    if "recovery" not in args.skip:
        rows = recovery(runner, [1, 10], args.quick)
        lines = ["| data | restart after | ready in s | bytes re-read and CRC-checked | page cache dropped first |",
                 "|---:|---|---:|---:|---|"]
        for gib, how, secs, cold, scanned in rows:
            lines.append(f"| {gib} GiB | {how} | {secs:.2f} | {scanned / 2**20:,.1f} MiB | "
                         f"{'yes' if cold else 'no (not permitted)'} |")
        sections.append(
            "### Recovery time\n\n"
            "`tally bench produce` writes 1 KiB messages to 4 partitions (default 1 GiB "
            "segments), then the broker is killed with SIGKILL and restarted, then stopped "
            "with SIGTERM and restarted; time from process start to the ready line, and the bytes "
            "the broker read back to recover (the sum of `scanned_bytes` in its start-up log: "
            "after SIGKILL, the segments past the recovery point; after a clean shutdown, what "
            "follows the last index entry).\n\n" +
            "\n".join(lines))

    generated = "\n\n".join(sections)
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = open(args.out).read() if os.path.exists(args.out) else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(args.out, "w") as f:
        f.write(f"{head}{begin}\n{generated}\n{end}{tail}")
    with open(os.path.join(args.data_root, "summary.json"), "w") as f:
        json.dump({k: v for k, v in summary.items() if k != "best"}, f, indent=2)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
