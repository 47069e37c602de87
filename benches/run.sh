#!/usr/bin/env bash
# Builds in release mode, runs the benchmark matrix against fresh brokers on this machine and
# writes the results into BENCHMARKS.md (between the bench markers). Options: see
# `benches/run.sh --help` (e.g. --quick for a small smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benches/run.py "$@"
