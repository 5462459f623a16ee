#!/bin/bash
# Import benchmark: a national-scale federation file (700,000 rows by
# default) imported by Licol into an empty database, then a full re-import
# of the next season onto it, and in the same run sqlite3's own .import of
# the same file (converted to UTF-8) into a bare table, for comparison.
# It also runs floor.sql: the same rows and indexes as Licol's first
# import, written by plain SQL statements with no cleaning and no matching.
# That estimates how fast any implementation on this schema could be.
# Prints wall time, rows per second, peak RSS and the ratios.
#
# Usage: bench/import/run.sh [BUILD_DIR] [ROWS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
rows=${2:-700000}
shared=${LICOL_SHARED_DIR:-$root/../shared}
work=$(mktemp -d /tmp/licol-bench-import-XXXXXX)
trap 'rm -rf "$work"' EXIT

gen() { /usr/bin/python3 "$shared/tools/gen-riders" --format ffe --rows "$rows" --season "$1" --seed 42 --out "$2"; }
echo "Generating $rows rows..." >&2
gen 2026 "$work/ffe-2026.csv"
gen 2027 "$work/ffe-2027.csv"
iconv -f cp1252 -t utf-8 "$work/ffe-2026.csv" > "$work/ffe-2026.utf8.csv"

# measure NAME COMMAND...: runs the command under /usr/bin/time and prints
# "NAME seconds peak_kb".
measure() {
    local name=$1
    shift
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/$name.out" 2> "$work/$name.err" ||
        { cat "$work/$name.err" >&2; exit 1; }
    read -r seconds kb < "$work/time"
    echo "$name $seconds $kb"
}

export LICOL_HOME=$root
# The national file is larger than the default upload limit of 100 MiB.
export LICOL_MAX_UPLOAD=1G
first=$(measure first "$build/licol" import --db "$work/licol.db" --json "$work/ffe-2026.csv")
second=$(measure reimport "$build/licol" import --db "$work/licol.db" --json "$work/ffe-2027.csv")
bare=$(measure sqlite3 sqlite3 "$work/bare.db" ".mode csv" ".separator ;" ".import $work/ffe-2026.utf8.csv riders")
"$build/licol" migrate --db "$work/floor.db" > /dev/null 2>&1
ln -s "$work/ffe-2026.utf8.csv" "$work/u.csv"
floor=$(cd "$work" && measure floor sqlite3 "$work/floor.db" ".read $root/bench/import/floor.sql")

echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
echo "rows: $rows, file: $(du -h "$work/ffe-2026.csv" | cut -f1)"
printf "%-10s %9s %12s %10s %8s\n" run seconds rows/s "peak MB" ratio
bare_s=$(echo "$bare" | cut -d' ' -f2)
for line in "$first" "$second" "$floor" "$bare"; do
    read -r name seconds kb <<< "$line"
    awk -v n="$name" -v s="$seconds" -v k="$kb" -v r="$rows" -v b="$bare_s" \
        'BEGIN { printf "%-10s %9.2f %12.0f %10.1f %8.2f\n", n, s, r / s, k / 1024, s / b }'
done
echo
echo "licol first import: $(tr -d '\n ' < "$work/first.out")"
echo "licol re-import:    $(tr -d '\n ' < "$work/reimport.out")"
