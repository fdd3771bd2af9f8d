#!/bin/sh
# merge_engine.sh: the pprof engine against `go tool pprof -proto` on N real
# Go CPU profiles (default 1000). Not part of `make test`; run it with
# `make bench-engine` or directly from the repository root.
#
#   test/bench/merge_engine.sh [N]
#
# Profiles come from the fixture generator (8 workloads, 1 s each, two
# generators in parallel) and are cached under build/bench/profiles, so only
# the first run pays the ~N/2 seconds. Three commands are timed on the same
# files with hyperfine (wall time, mean of RUNS runs after a warm-up) and
# once each under /usr/bin/time -v (peak RSS):
#   engine  build/pprof-dump merge -o OUT FILES   (decode+validate+merge+encode)
#   pprof   $(go env GOTOOLDIR)/pprof -proto FILES (google/pprof, as `go tool
#           pprof` runs it, without the go command's own start-up)
#   floor   build/pprof-dump inflate FILES          (inflate only, with the
#           decoder's inflaters: libdeflate for a small single member, else zlib)
# The results go to stdout and build/bench/merge_engine.md.
set -eu

N=${1:-1000}
RUNS=${RUNS:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build/bench
PROFILES=$OUT/profiles
export GOCACHE="$ROOT/build/gocache" HOME="${HOME:-/tmp}" PPROF_TMPDIR="$OUT/tmp"
mkdir -p "$PROFILES" "$PPROF_TMPDIR"

have=$(find "$PROFILES" -name '*.pb.gz' | wc -l)
if [ "$have" -lt "$N" ]; then
    per=$(( (N + 15) / 16 ))   # 8 workloads x 2 generators
    echo "generating $((per * 16)) profiles into $PROFILES (about $((per * 8)) s)"
    go run ./test/fixtures/gen/main.go -out "$PROFILES/a" -n "$per" -d 1s &
    a=$!
    go run ./test/fixtures/gen/main.go -out "$PROFILES/b" -n "$per" -d 1s &
    b=$!
    wait $a
    wait $b
fi
make --no-print-directory build/pprof-dump >/dev/null

find "$PROFILES" -name '*.pb.gz' | sort | head -n "$N" > "$OUT/files.txt"
FILES=$(tr '\n' ' ' < "$OUT/files.txt")
count=$(wc -l < "$OUT/files.txt")
gz_bytes=$(cat $FILES | wc -c)
raw_bytes=$(build/pprof-dump inflate $FILES | cut -d' ' -f1)
PPROF="$(go env GOTOOLDIR)/pprof"


# Same output, first: the comparison is only meaningful if both merges agree.
build/pprof-dump merge -o $OUT/engine.pb.gz $FILES 2>/dev/null
"$PPROF" -proto $FILES > $OUT/pprof.pb.gz 2>/dev/null
build/pprof-dump samples $OUT/engine.pb.gz > $OUT/engine.txt
build/pprof-dump samples $OUT/pprof.pb.gz > $OUT/pprof.txt
if cmp -s $OUT/engine.txt $OUT/pprof.txt; then agree=yes; else agree=NO; fi

export FILES
hyperfine --style basic --warmup 1 --runs "$RUNS" --export-json "$OUT/hyperfine.json" \
    -n engine "build/pprof-dump merge -o $OUT/engine.pb.gz \$FILES 2>/dev/null" \
    -n pprof "$PPROF -proto \$FILES > $OUT/pprof.pb.gz 2>/dev/null" \
    -n floor "build/pprof-dump inflate \$FILES >/dev/null" > "$OUT/hyperfine.txt"

rss() { # peak RSS in KiB of one run of "$@"
    /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ {print $2}'
}
rss_engine=$(rss build/pprof-dump merge -o $OUT/engine.pb.gz $FILES)
rss_pprof=$(rss "$PPROF" -proto $FILES)
rss_floor=$(rss build/pprof-dump inflate $FILES)

/usr/bin/python3 - "$OUT" "$count" "$gz_bytes" "$raw_bytes" "$rss_engine" "$rss_pprof" "$rss_floor" "$agree" <<'PY'
import json, sys
out, count, gz, raw, re_, rp, rf, agree = sys.argv[1:]
res = {r["command"]: r for r in json.load(open(f"{out}/hyperfine.json"))["results"]}
def t(name):
    r = res[name]
    return (r["mean"] * 1000, r["stddev"] * 1000, r["min"] * 1000,
            (r["user"] + r["system"]) * 1000)
e, es, emin, ecpu = t("engine"); p, ps, pmin, pcpu = t("pprof"); f, fs, fmin, fcpu = t("floor")
re_, rp, rf = int(re_), int(rp), int(rf)
lines = [
    f"inputs: {count} profiles, {int(gz)/1e6:.2f} MB gzip, {int(raw)/1e6:.2f} MB inflated; outputs agree: {agree}",
    "",
    "| command | wall mean ± sd | wall min | CPU (user+sys) | peak RSS |",
    "|---|---|---|---|---|",
    f"| engine (pprof-dump merge) | {e:.1f} ± {es:.1f} ms | {emin:.1f} ms | {ecpu:.1f} ms | {re_/1024:.1f} MiB |",
    f"| go tool pprof -proto | {p:.1f} ± {ps:.1f} ms | {pmin:.1f} ms | {pcpu:.1f} ms | {rp/1024:.1f} MiB |",
    f"| floor: inflate only (the decoder's inflaters) | {f:.1f} ± {fs:.1f} ms | {fmin:.1f} ms | {fcpu:.1f} ms | {rf/1024:.1f} MiB |",
    "",
    f"engine vs pprof: {p/e:.1f}x faster by mean wall time, {pmin/emin:.1f}x by best wall time, "
    f"{pcpu/ecpu:.1f}x less CPU; {re_/rp:.2f} of its peak memory. "
    f"Engine wall time is {emin/fmin:.1f}x the inflate floor (best runs).",
]
text = "\n".join(lines)
print(text)
open(f"{out}/merge_engine.md", "w").write(text + "\n")
PY
