#!/usr/bin/env bash
# Fuzz one target on stable Rust: ./run.sh TARGET SECONDS [extra libFuzzer flags...]
#   TARGET: parse | parse_print_parse
# Uses `cargo fuzz run --sanitizer none` (stable-compatible) when cargo-fuzz is installed,
# otherwise builds the targets with the SanitizerCoverage flags cargo-fuzz would pass and runs
# the libFuzzer binary directly. Seeds corpus/TARGET with the RFC 4475 torture messages.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
case "$target" in
    parse | parse_print_parse) ;;
    *)
        echo "unknown target $target (parse, parse_print_parse)" >&2
        exit 2
        ;;
esac

mkdir -p "corpus/$target" "artifacts/$target"
for seed in ../tests/data/rfc4475/*.dat; do
    [ -e "corpus/$target/${seed##*/}" ] || cp "$seed" "corpus/$target/"
done

if [ -z "${FUZZ_NO_CARGO_FUZZ:-}" ] && cargo fuzz --version >/dev/null 2>&1; then
    exec cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -dict="$here/sip.dict" "$@"
fi

# No cargo-fuzz (or FUZZ_NO_CARGO_FUZZ=1): the instrumentation cargo-fuzz passes, without
# AddressSanitizer (which needs nightly; the targets are safe Rust, so it adds little).
# `--target` keeps RUSTFLAGS off build scripts, which would not link against libFuzzer.
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --bins --target "$host" --target-dir target/stable-sancov
exec "target/stable-sancov/$host/release/$target" \
    -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -print_final_stats=1 -dict="$here/sip.dict" "$@" "corpus/$target"
