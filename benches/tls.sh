#!/bin/bash
# tls.sh: CPU per call over TLS, side by side with TCP (issue 20), with connection reuse: a
# carrier's SBC keeps a few connections open and sends every call on them, so the handshakes are
# made before the count starts and the figure is the per-call cost of the record layer.
#
# Runs the release `tollgate serve` on benches/sipp/parity.toml's routing with a TCP listener on
# 127.0.0.1:5094 and a TLS listener on 127.0.0.1:5095 (a test PKI made by `stream --make-pki`;
# the client shows the trunk's certificate, so the TLS calls are also trunk-by-certificate
# calls), pinned to CPU 0 with the load (benches/stream) on CPU 1; then, alternating TCP and TLS
# REPS times: CALLS calls at RATE calls/s on CONNS connections, ACKing each 302, and the
# server's CPU from the first call until SETTLE s after the last (its timers included).
# Prints one JSON line per run and the medians. Not for CI.
#   RATE=2000 CALLS=20000 CONNS=4 REPS=3 benches/tls.sh
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
rate=${RATE:-2000} calls=${CALLS:-20000} conns=${CONNS:-4} reps=${REPS:-3} settle=${SETTLE:-6}
work=$(mktemp -d /tmp/tollgate-tls.XXXXXX)
[ -n "${NO_BUILD:-}" ] || cargo build --quiet --release -p tollgate-server -p tollgate-bench \
  --bin tollgate --bin stream --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release
"$bin/stream" --make-pki "$work"
sed -e 's/^udp = \["127.0.0.1:5080"\]/udp = []/' -e 's/^tcp = \[\]/tcp = ["127.0.0.1:5094"]/' \
  "$repo/benches/sipp/parity.toml" >"$work/tollgate.toml"
sed -i "/^t4_ms = /a\\
\\
[sip.tls]\\
listen = [\"127.0.0.1:5095\"]\\
cert = \"$work/tollgate.pem\"\\
key = \"$work/tollgate.key\"\\
client_ca = \"$work/ca.pem\"" "$work/tollgate.toml"
sed -i "/^cidrs = \[\"127.0.0.1\/32\", \"::1\/128\"\]/a\\
tls_peers = [\"dns:sbc.carrier.test\"]" "$work/tollgate.toml"
"$bin/tollgate" check --config "$work/tollgate.toml" >&2
taskset -c 0 "$bin/tollgate" serve --config "$work/tollgate.toml" >"$work/tollgate.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; echo "logs: $work" >&2' EXIT
sleep 2
kill -0 $pid || { cat "$work/tollgate.log" >&2; exit 1; }
run() {
  local extra=()
  [ "$1" = tls ] && extra=(--tls --ca "$work/ca.pem" --cert "$work/sbc.pem" --key "$work/sbc.key")
  taskset -c 1 "$bin/stream" --target "127.0.0.1:$2" "${extra[@]}" --rate "$rate" --calls "$calls" \
    --conns "$conns" --pid $pid --settle "$settle"
}
run tcp 5094 >/dev/null # warm-up
declare -A cpu
for r in $(seq "$reps"); do
  for t in tcp tls; do
    port=5094; [ $t = tls ] && port=5095
    line=$(run $t $port)
    echo "$line"
    cpu[$t]+="$(sed 's/.*"cpu_ms_per_1000":\([0-9.]*\).*/\1/' <<<"$line") "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tcp=$(median "${cpu[tcp]}") tls=$(median "${cpu[tls]}")
echo "median CPU ms per 1000 calls at $rate calls/s on $conns connections: tcp=$tcp tls=$tls ratio=$(awk "BEGIN {printf \"%.2f\", $tls / $tcp}")"
