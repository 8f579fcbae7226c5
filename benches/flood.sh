#!/bin/bash
# flood.sh: the server's RSS under an INVITE flood over UDP (issue 18: memory is bounded whatever
# is offered; past its bounds the node sheds with 503, it never grows).
#
# Runs the release `tollgate serve` on the example config (config/tollgate.toml, copied to a
# scratch folder, on 127.0.0.1:5090 and HTTP on 127.0.0.1:18080), then `flood` (benches/flood)
# at 1x and 4x PEAK calls/s for SECONDS each, every call from its own ANI, ACKing each final as a
# carrier does, and once more at 4x without ACKs (every transaction held to timer H: the worst
# case for the table). After each run it waits SETTLE seconds (timer H is 32 s, T4 5 s) and
# reads the RSS again. Prints one JSON line per run. Not for CI: minutes of the machine.
#   PEAK=8000 SECONDS=60 SETTLE=45 benches/flood.sh
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
peak=${PEAK:-8000}
secs=${SECONDS_PER_RUN:-${SECS:-60}}
settle=${SETTLE:-45}
work=$(mktemp -d /tmp/tollgate-flood.XXXXXX)
cargo build --quiet --release -p tollgate-server -p tollgate-bench --bin tollgate --bin flood \
  --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release
cp -r "$repo/config/." "$work/"
sed -i 's/127\.0\.0\.1:5060/127.0.0.1:5090/g; s/127\.0\.0\.1:8080/127.0.0.1:18080/' "$work/tollgate.toml"
"$bin/tollgate" serve --config "$work/tollgate.toml" >"$work/tollgate.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; echo "logs: $work" >&2' EXIT
sleep 2
kill -0 $pid || { cat "$work/tollgate.log" >&2; exit 1; }
base=$(awk '/VmRSS/ {print int($2/1024)}' /proc/$pid/status)
echo "{\"baseline_rss_mb\":$base}"
run() {
  "$bin/flood" --target 127.0.0.1:5090 --pid $pid --rate "$1" --seconds "$secs" --settle "$settle" $2 \
    2>>"$work/flood.log"
}
run "$peak" ""
run $((peak * 4)) ""
run $((peak * 4)) --no-ack
grep -c '"decision"' "$work/tollgate.log" >/dev/null || true
