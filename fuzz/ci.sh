#!/usr/bin/env bash
# CI fuzzing on stable Rust: builds every target once (the SanitizerCoverage path of run.sh, no
# cargo-fuzz), then runs each for FUZZ_SECONDS (default 60), FUZZ_JOBS at a time (default 2),
# from its committed seeds (and whatever corpus/TARGET already holds). Prints each target's
# executions, coverage (edges, features) and corpus size; fails when any target crashes
# (panic, overflow, timeout of one input, out of memory), naming its artifact.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
targets=${FUZZ_TARGETS:-"parse parse_print_parse extract tcp_framing rules config stir"}
export FUZZ_NO_CARGO_FUZZ=1

start=$(date +%s)
./run.sh --build
echo "fuzz build: $(($(date +%s) - start)) s"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run_one() {
    local t=$1
    # -timeout: an input that takes 10 s is a hang, and a failure.
    if FUZZ_SKIP_BUILD=1 ./run.sh "$t" "$seconds" -timeout=10 -rss_limit_mb=2048 \
        >"$logs/$t.log" 2>&1; then
        echo ok >"$logs/$t.rc"
    else
        echo "failed ($?)" >"$logs/$t.rc"
    fi
}

running=0
for t in $targets; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
wait || true

failed=0
printf '%-18s %6s %12s %8s %8s %8s  %s\n' target seconds executions edges features corpus result
for t in $targets; do
    log="$logs/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    rc=$(cat "$logs/$t.rc" 2>/dev/null || echo "no result")
    printf '%-18s %6s %12s %8s %8s %8s  %s\n' "$t" "$seconds" "${execs:--}" "${cov:--}" \
        "${ft:--}" "${corp:--}" "$rc"
    if [ "$rc" != ok ]; then
        failed=1
        echo "---- $t: last lines of its log" >&2
        tail -n 40 "$log" >&2
        ls -1 "artifacts/$t" >&2 2>/dev/null || true
    fi
done
echo "fuzz ci: $(($(date +%s) - start)) s in all"
exit "$failed"
