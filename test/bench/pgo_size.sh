#!/bin/sh
# pgo_size.sh: bytes of a full merge vs strip_labels vs shape=pgo on N real
# Go CPU profiles (default 416), and the check that shape=pgo leaves the
# compiler's call graph unchanged. Not part of `make test`; the figures are
# in docs/performance.md ("shape=pgo: size").
#
#   test/bench/pgo_size.sh [N]
#
# Profiles come from the fixture generator run by Go 1.23 (so they carry
# Function.start_line, as every Go >= 1.20 profile does): 8 workloads, 1 s
# each, four generators at once, cached under build/pgo-size/profiles. The
# merges are `pgof merge` with and without --strip-labels / --shape pgo, the
# same engine code the collector runs for POST /v1/merge?shape=pgo.
set -eu

N=${1:-416}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
GO=${PGOF_GO123:-/usr/lib/go-1.23/bin/go}
OUT=build/pgo-size
PROFILES=$OUT/profiles
export GOCACHE="$ROOT/build/gocache-go123" GOTOOLCHAIN=local GOFLAGS=
mkdir -p "$PROFILES"

have=$(find "$PROFILES" -name '*.pb.gz' | wc -l)
if [ "$have" -lt "$N" ]; then
    per=$(( (N + 31) / 32 ))   # 8 workloads x 4 generators
    echo "generating $((per * 32)) profiles into $PROFILES (about $((per * 8)) s)"
    for g in a b c d; do
        "$GO" run ./test/fixtures/gen/main.go -out "$PROFILES/$g" -n "$per" -d 1s &
    done
    wait
fi
make --no-print-directory build/pgof build/pprof-dump >/dev/null

FILES=$(find "$PROFILES" -name '*.pb.gz' | sort | head -n "$N")
count=$(echo "$FILES" | wc -l)
build/pgof merge -q -o $OUT/full.pgo $FILES
build/pgof merge -q --strip-labels -o $OUT/strip.pgo $FILES
build/pgof merge -q --shape pgo -o $OUT/pgo.pgo $FILES
build/pprof-dump pgo-edges $OUT/full.pgo > $OUT/full.edges
build/pprof-dump pgo-edges $OUT/pgo.pgo > $OUT/pgo.edges
if cmp -s $OUT/full.edges $OUT/pgo.edges; then same=yes; else same=NO; fi

size() { stat -c %s "$1"; }
raw() { zcat "$1" | wc -c; }
full=$(size $OUT/full.pgo)
printf '%d profiles (%s bytes of gzip input)\n' "$count" "$(cat $FILES | wc -c)"
printf '%-14s %10s %12s %8s\n' merge "gzip bytes" "protobuf" "ratio"
for m in full strip pgo; do
    s=$(size $OUT/$m.pgo)
    printf '%-14s %10d %12d %7.1fx\n' "$m" "$s" "$(raw $OUT/$m.pgo)" \
        "$(echo "$full / $s" | bc -l)"
done
printf 'compiler edge table identical (full vs shape=pgo): %s (%d lines)\n' "$same" \
    "$(wc -l < $OUT/full.edges)"
[ "$same" = yes ]
