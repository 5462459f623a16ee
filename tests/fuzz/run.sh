#!/bin/bash
# Runs every libFuzzer target of a fuzz build for a few seconds each, over
# its seed corpus, and fails on the first crash. New inputs the fuzzer finds
# go to a temporary directory, not into the committed corpus.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:?build directory}
seconds=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
export LICOL_SHARED_DIR="${LICOL_SHARED_DIR:-$here/../../../shared}"

for target in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$target" ] || continue
    name=$(basename "$target")
    corpus="$here/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    echo "== $name ($seconds s)"
    "$target" -max_total_time="$seconds" -print_final_stats=1 "$work" "$corpus" 2>&1 | tail -n 3
    rm -rf "$work"
done
