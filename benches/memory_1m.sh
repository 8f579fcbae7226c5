#!/bin/bash
# memory_1m.sh: the server's RSS while 1,000,000 distinct callers go through the in-memory risk
# store (issue 18: memory bounded, target under 300 MB, and back near the baseline once the
# windows expire).
#
# Runs the release `tollgate serve` on the example config (config/tollgate.toml, copied to a
# scratch folder, SIP on 127.0.0.1:5091 and HTTP on 127.0.0.1:18081), then `flood`
# (benches/flood) at RATE calls/s for CALLS/RATE seconds, every call from its own ANI
# (+1212 2000000 upwards), each final ACKed as a carrier does. It samples the server's RSS every
# second and prints one JSON line: the baseline, the peak, the RSS right after the flood and
# after SETTLE seconds, the flood's answer counts, and the engine's own gauges at the end
# (store keys and bytes, caller history, pops, the allocator's live heap).
#
# Variants (environment):
#   MAX_POPS=1000        [http] max_pops
#   HISTORY=off          [risk] history_ttl_s = 0
#   EXPIRE=S             windows [S/3, 2S/3, S], history_ttl_s = S, pop retention S: every
#                        window has expired within SETTLE (give SETTLE > S + the sweep period)
#   CALLS, RATE, SETTLE  defaults 1000000, 8000, 60
# Not for CI: minutes of the machine. Run one at a time.
#   benches/memory_1m.sh
#   EXPIRE=30 SETTLE=60 benches/memory_1m.sh
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
calls=${CALLS:-1000000}
rate=${RATE:-8000}
settle=${SETTLE:-60}
secs=$(( (calls + rate - 1) / rate ))
work=$(mktemp -d /tmp/tollgate-mem1m.XXXXXX)
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --quiet --release -p tollgate-server -p tollgate-bench --bin tollgate --bin flood \
    --manifest-path "$repo/Cargo.toml"
fi
bin=${BIN_DIR:-$repo/target/release}
cp -r "$repo/config/." "$work/"
cfg=$work/tollgate.toml
sed -i 's/127\.0\.0\.1:5060/127.0.0.1:5091/g; s/127\.0\.0\.1:8080/127.0.0.1:18081/' "$cfg"
# Quiet: the decision log of a million calls is not what is measured.
sed -i 's/^level = "info"/level = "warn"\ndecisions = false/' "$cfg"
if [ -n "${MAX_POPS:-}" ]; then
  sed -i "s/^max_pops = .*/max_pops = $MAX_POPS/" "$cfg"
fi
if [ "${HISTORY:-on}" = off ]; then
  sed -i 's/^history_ttl_s = [0-9]*/history_ttl_s = 0/' "$cfg"
fi
if [ -n "${EXPIRE:-}" ]; then
  e=$EXPIRE
  sed -i "s/^windows = .*/windows = [$((e / 3)), $((e * 2 / 3)), $e]/; s/^history_ttl_s = [0-9]*/history_ttl_s = $e/; s/^retention_s = .*/retention_s = $e/" "$cfg"
fi
"$bin/tollgate" check --config "$cfg" >/dev/null
"$bin/tollgate" serve --config "$cfg" >"$work/tollgate.log" 2>&1 &
pid=$!
sampler=
trap 'kill $pid 2>/dev/null; [ -n "$sampler" ] && kill $sampler 2>/dev/null; wait 2>/dev/null; echo "logs: $work" >&2' EXIT
sleep 3
kill -0 $pid || { cat "$work/tollgate.log" >&2; exit 1; }
rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$pid/status; }
base=$(rss)
# RSS every second, for the peak over the whole run (flood, settle).
( while kill -0 $pid 2>/dev/null; do rss >>"$work/rss.txt" 2>/dev/null || true; sleep 1; done ) &
sampler=$!
flood=$("$bin/flood" --target 127.0.0.1:5091 --pid $pid --rate "$rate" --seconds "$secs" 2>"$work/flood.log")
after_flood=$(rss)
sleep "$settle"
after_settle=$(rss)
peak=$(sort -n "$work/rss.txt" | tail -1)
metric() {
  curl -s -H 'Authorization: Bearer example-admin-token-change-me' http://127.0.0.1:18081/metrics \
    | awk -v m="$1" '$1 == m {printf "%d", $2; found=1} END {if (!found) printf "null"}'
}
label="example"
[ -n "${MAX_POPS:-}" ] && label="$label,max_pops=$MAX_POPS"
[ "${HISTORY:-on}" = off ] && label="$label,history=off"
[ -n "${EXPIRE:-}" ] && label="$label,expire=${EXPIRE}s"
printf '{"config":"%s","calls":%s,"rate":%s,"baseline_rss_mb":%s,"peak_rss_mb":%s,"after_flood_rss_mb":%s,"after_settle_rss_mb":%s,"settle_s":%s,"store_keys":%s,"store_bytes":%s,"history_callers":%s,"heap_allocated_bytes":%s,"flood":%s}\n' \
  "$label" "$calls" "$rate" "$base" "$peak" "$after_flood" "$after_settle" "$settle" \
  "$(metric tollgate_risk_memory_keys)" "$(metric tollgate_risk_memory_bytes)" \
  "$(metric tollgate_risk_history_callers)" "$(metric tollgate_memory_allocated_bytes)" "$flood"
