#!/bin/bash
# soak.sh: a long steady run with everything on, sampled every 10 s and drawn as charts.
#
# Starts its own redis-server (127.0.0.1:16399, the risk store and the pop fan-out), a real HTTP
# CRM (benches/soak/crm.py on 127.0.0.1:18099) and the release `tollgate serve` (SIP on
# 127.0.0.1:5095, the HTTP API on 127.0.0.1:18095) with the example rules, then drives it with
# sipp (benches/sipp/peer/sipp/invite_302.xml: INVITE, 302, ACK) at RATE calls/s for MINUTES,
# from CALLERS distinct callers in 10,000 exchanges (each caller calls about once per
# CALLERS/RATE seconds; keep CALLERS at RATE x 360 or more, or each caller passes the example's
# 10 calls per hour to one line after a while and the risk rules start rejecting, as they should:
# a run of 200,000 callers at 2,000/s did at 33 min); the CRM cache holds them all, so the
# CRM sees each caller about once per 10 minutes, as a real one would). sipp's watchdog may
# trip as often as it likes: on a shared machine it would otherwise end the run. Every 10 s benches/soak/sampler.py
# records RSS, open fds, CPU, decision p50/p99 over the interval, transactions held, calls
# answered and Redis used_memory; at the end gnuplot draws them into OUT (PNG per series) with
# the samples (samples.csv) and a summary (summary.txt). Not for CI.
#   RATE=4000 MINUTES=60 benches/soak.sh           # half the peak of benches/flood.sh, one hour
#   (the CRM here is Python: on a busy 2-core machine its first pass over a million callers,
#   all cache misses, cannot keep up with 4,000/s and calls route at the CRM deadline)
#   RATE=1000 MINUTES=3 OUT=/tmp/soak benches/soak.sh
#   BIN=/tmp/tollgate-old NO_BUILD=1 ...     # another build of the engine, for an A/B run
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
rate=${RATE:-4000}
minutes=${MINUTES:-30}
callers=${CALLERS:-1000000}
out=${OUT:-$repo/benches/results/soak}
for tool in sipp redis-server redis-cli python3 gnuplot; do
  command -v "$tool" >/dev/null || { echo "soak.sh: $tool is not installed" >&2; exit 1; }
done
work=$(mktemp -d /tmp/tollgate-soak.XXXXXX)
mkdir -p "$out"
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --quiet --release -p tollgate-server --bin tollgate --manifest-path "$repo/Cargo.toml"
fi
bin=${BIN:-$repo/target/release/tollgate}
token=soak-admin-token-0000001

redis-server --port 16399 --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
redis_pid=$!
python3 "$repo/benches/soak/crm.py" 18099 &
crm_pid=$!
cp -r "$repo/config/routes" "$work/routes"
cat >"$work/tollgate.toml" <<TOML
[sip]
udp = ["127.0.0.1:5095"]

[[trunk]]
name = "carrier"
cidrs = ["127.0.0.1/32"]
trusted = true

[routing]
acd_host = "acd.example.net"
emergency_queue = "emergency"
rules_dir = "routes"

[log]
format = "json"
level = "warn"

[crm]
kind = "http"
deadline_ms = 100
[crm.http]
url = "http://127.0.0.1:18099/callers/{digits}"
[crm.http.mapping]
customer_id = "id"
tier = "tier"
[crm.cache]
max_entries = $((callers + callers / 2))
ttl_ms = 600000
negative_ttl_ms = 600000

[risk]
store = "redis"
[risk.redis]
url = "redis://127.0.0.1:16399/0"

[http]
listen = "127.0.0.1:18095"
redis_url = "redis://127.0.0.1:16399/0"

[[http.token]]
name = "ops"
scope = "admin"
token = "$token"
TOML
sleep 1
"$bin" serve --config "$work/tollgate.toml" >/dev/null 2>"$work/tollgate.err" &
pid=$!
cleanup() {
  kill "${sampler_pid:-}" "$pid" "$crm_pid" "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "work files: $work" >&2
}
trap cleanup EXIT
sleep 3
kill -0 $pid || { cat "$work/tollgate.err" >&2; exit 1; }

# Callers: +1 NPA NXX LINE over 10,000 exchanges; each DNIS one of the example lines.
python3 - "$callers" >"$work/calls.csv" <<'PY'
import sys
n = int(sys.argv[1])
lines = ["18005550100", "18885550101", "18775550102"]
print("SEQUENTIAL")
for i in range(n):
    ex = i % 10000
    npa, nxx, line = 200 + ex // 100 * 7 % 800, 200 + ex % 100 * 7, i // 10000
    ani = f"1{npa:03d}{nxx:03d}{line:04d}"
    print(f"{ani};{lines[i % 3]};{ani[1:]}")
PY

rm -f "$out/samples.csv"
python3 "$repo/benches/soak/sampler.py" $pid "http://127.0.0.1:18095/metrics" "$token" 16399 10 \
  "$out/samples.csv" &
sampler_pid=$!
calls=$((rate * minutes * 60))
echo "soak: $calls calls at $rate/s for $minutes min from $callers callers (pid $pid)" >&2
sipp 127.0.0.1:5095 -sf "$repo/benches/sipp/peer/sipp/invite_302.xml" -inf "$work/calls.csv" \
  -r "$rate" -m "$calls" -l $((rate * 2)) -i 127.0.0.1 -p 0 -nostdin \
  -watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000 \
  -timeout $((minutes * 60 + 600))s -timeout_error \
  -trace_stat -fd 10 -stf "$work/sipp_stat.csv" >"$work/sipp.out" 2>&1 || true
# The last windows: transactions expire (timer I, T4 = 5 s) and the node goes quiet.
sleep 30
kill $sampler_pid 2>/dev/null || true
wait $sampler_pid 2>/dev/null || true
gnuplot -e "in='$out/samples.csv'; outdir='$out'" "$repo/benches/soak/plot.gp"

python3 - "$work/sipp_stat.csv" "$out/samples.csv" "$rate" "$minutes" "$callers" >"$out/summary.txt" <<'PY'
import csv, sys
stat, samples, rate, minutes, callers = sys.argv[1:6]
rows = list(csv.reader(open(stat), delimiter=";"))
h, last = rows[0], rows[-1]
col = lambda n: last[h.index(n)]
print(f"sipp: {rate} calls/s offered for {minutes} min from {callers} callers")
print(f"  successful {col('SuccessfulCall(C)')}, failed {col('FailedCall(C)')}, "
      f"retransmissions {col('Retransmissions(C)')}, dead calls {col('DeadCallMsgs(C)')}")
s = list(csv.DictReader(open(samples)))
def stats(k):
    v = [float(r[k]) for r in s]
    steady = v[1:-3] if len(v) > 6 else v
    return f"{k}: first {v[0]:g}, min {min(steady):g}, max {max(steady):g}, last loaded {steady[-1]:g}, after {v[-1]:g}"
for k in ["rss_mb", "fds", "cpu_pct", "p50_ms", "p99_ms", "transactions", "calls", "redis_mb"]:
    print("  " + stats(k))
PY
cat "$out/summary.txt"
