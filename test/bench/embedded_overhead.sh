#!/bin/sh
# libpgof's overhead at 100 Hz (make bench-embedded; not part of make test):
# the same CPU-bound program (2 threads x 1.5e9 xorshift rounds) without and
# with a profile recording for its whole run. Reported in docs/performance.md.
set -eu
BIN=${PGOF_BUILD:-build}/embedded/pgof-bench
exec hyperfine --warmup 2 --runs "${RUNS:-20}" --export-markdown "${OUT:-/dev/stdout}" \
  "$BIN off" "$BIN on"
