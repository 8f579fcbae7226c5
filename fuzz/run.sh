#!/usr/bin/env bash
# Fuzz one target on stable Rust: ./run.sh TARGET SECONDS [extra libFuzzer flags...]
#   TARGET: parse | parse_print_parse | extract | tcp_framing | rules | config | stir
# Or build every target and stop: ./run.sh --build
#
# Uses `cargo fuzz run --sanitizer none` (stable-compatible) when cargo-fuzz is installed and
# FUZZ_NO_CARGO_FUZZ is unset, otherwise builds the targets with the SanitizerCoverage flags
# cargo-fuzz would pass and runs the libFuzzer binary directly. Seeds corpus/TARGET from
# seeds/TARGET (and the RFC 4475 torture messages for parse and parse_print_parse).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
targets="parse parse_print_parse extract tcp_framing rules config stir"
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="target/stable-sancov/$host/release"

# The instrumentation cargo-fuzz passes, without AddressSanitizer (which needs nightly; the
# workspace forbids unsafe code, so it adds little). `--target` keeps RUSTFLAGS off build
# scripts, which would not link against libFuzzer. `--locked`: the lock file is committed.
build() {
    RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
        cargo build --locked --release --bins --target "$host" --target-dir target/stable-sancov
}

if [ "${1:-}" = "--build" ]; then
    build
    echo "built: $bin_dir/{${targets// /,}}"
    exit 0
fi
if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...] | $0 --build" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
case " $targets " in
    *" $target "*) ;;
    *)
        echo "unknown target $target ($targets)" >&2
        exit 2
        ;;
esac

mkdir -p "corpus/$target" "artifacts/$target"
seed_from() {
    for seed in "$@"; do
        [ -f "$seed" ] || continue
        [ -e "corpus/$target/${seed##*/}" ] || cp "$seed" "corpus/$target/"
    done
}
case "$target" in
    parse | parse_print_parse) seed_from ../tests/data/rfc4475/*.dat ;;
    *) seed_from seeds/"$target"/* ;;
esac
# The SIP dictionary helps every target that reads SIP text.
dict=()
case "$target" in
    parse | parse_print_parse | extract | tcp_framing) dict=(-dict="$here/sip.dict") ;;
esac

if [ -z "${FUZZ_NO_CARGO_FUZZ:-}" ] && cargo fuzz --version >/dev/null 2>&1; then
    exec cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" "$@"
fi

# FUZZ_SKIP_BUILD=1: the binaries are built already (ci.sh builds once for every target).
[ -n "${FUZZ_SKIP_BUILD:-}" ] || build
exec "$bin_dir/$target" \
    -artifact_prefix="artifacts/$target/" \
    -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" "$@" "corpus/$target"
