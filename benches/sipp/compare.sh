#!/bin/bash
# compare.sh: Tollgate vs Kamailio side by side with sipp, on this machine, in one run.
#
# Starts both engines (Tollgate on 127.0.0.1:5080 with parity.toml or $PARITY, Kamailio on 127.0.0.1:5070
# with benches/sipp/peer/kamailio/kamailio.cfg), then, alternating engines:
#   1. CPU ms per 1000 calls at CPU_RATE calls/s offered (CPU_CALLS calls), REPS times each;
#   2. the offered-rate steps (RATES, STEP_CALLS calls each) until a step has a failed call or
#      the achieved calls/s stops rising (a step that does not rise is run once more first: one
#      stall of the shared machine must not end the search);
# prints a table (medians) and stops both engines. Not for CI: it needs kamailio, sipp and
# redis-server installed and several minutes of the machine to itself. See README.md.
set -euo pipefail

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bench=${BENCH_DIR:-$repo/benches/sipp/peer}
reps=${REPS:-3}
cpu_calls=${CPU_CALLS:-30000}
cpu_rate=${CPU_RATE:-3000}
rates=${RATES:-2000 3000 4000 5000 6000 8000 10000 12000}
step_calls=${STEP_CALLS:-20000}
settle=${SETTLE:-8} # seconds between runs: both engines keep transactions ~5 s after the ACK
# NO_BUILD=1 uses target/release/tollgate as it is; TOLLGATE_BIN=path runs that binary instead.
tollgate_bin=${TOLLGATE_BIN:-$repo/target/release/tollgate}
tollgate_target=127.0.0.1:5080
kamailio_target=127.0.0.1:5070

for tool in sipp kamailio redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is not installed (see README.md)" >&2; exit 1; }
done
[ -x "$bench/cpu-per-call.sh" ] || { echo "compare.sh: no $bench/cpu-per-call.sh (set BENCH_DIR)" >&2; exit 1; }

work=$(mktemp -d /tmp/tollgate-compare.XXXXXX)
tg_pid="" kam_main="" redis_started=""
cleanup() {
  [ -n "$tg_pid" ] && kill "$tg_pid" 2>/dev/null && wait "$tg_pid" 2>/dev/null || true
  [ -n "$kam_main" ] && kill "$kam_main" 2>/dev/null || true
  [ -n "$redis_started" ] && redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
  echo "logs and raw results: $work" >&2
}
trap cleanup EXIT

if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --port 6379 --save "" --appendonly no >/dev/null
  redis_started=1
  sleep 1
fi
redis_pid=$(redis-cli -p 6379 info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')

if [ -z "${NO_BUILD:-}" ] && [ -z "${TOLLGATE_BIN:-}" ]; then
  echo "building tollgate (release)..." >&2
  cargo build --quiet --release -p tollgate-server --manifest-path "$repo/Cargo.toml"
fi
# PARITY=benches/sipp/parity-redis.toml adds the Redis work Kamailio's config does (velocity
# counter, blocklist); its block entries are added to Redis first.
parity=${PARITY:-$repo/benches/sipp/parity.toml}
if grep -q '^store = "redis"' "$parity"; then
  for n in +12125550000 +4930000000; do
    "$tollgate_bin" list add --config "$parity" block "$n" --reason "kamailio parity" >/dev/null
  done
fi
"$tollgate_bin" serve --config "$parity" \
  >"$work/tollgate.log" 2>&1 &
tg_pid=$!

kamailio -f "$bench/kamailio/kamailio.cfg" -P "$work/kamailio.pid" -w "$work" -E -m 1024 -M 32 \
  >"$work/kamailio.log" 2>&1
for _ in $(seq 50); do [ -s "$work/kamailio.pid" ] && break; sleep 0.1; done
kam_main=$(cat "$work/kamailio.pid")
sleep 2
kill -0 "$tg_pid" || { echo "tollgate did not start:" >&2; cat "$work/tollgate.log" >&2; exit 1; }
kill -0 "$kam_main" || { echo "kamailio did not start:" >&2; cat "$work/kamailio.log" >&2; exit 1; }
# Kamailio is one main process and its forked children (receivers, timers, ...): count them all.
kam_pids="$kam_main $(pgrep -d ' ' -P "$kam_main")"

target_of() { if [ "$1" = tollgate ]; then echo $tollgate_target; else echo $kamailio_target; fi; }
pids_of() { if [ "$1" = tollgate ]; then echo "$tg_pid"; else echo "$kam_pids"; fi; }
ticks() { local t=0 p; for p in "$@"; do set -- $(sed 's/^.*) //' "/proc/$p/stat"); t=$((t + ${12} + ${13})); done; echo $t; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

echo "warm-up (2000 calls each)..." >&2
for e in tollgate kamailio; do "$bench/sipp/run.sh" "$(target_of $e)" 2000 1000 >/dev/null; done
sleep "$settle"

# 1. CPU per call: cpu-per-call.sh, REPS times, alternating; Redis CPU noted on the side.
for rep in $(seq "$reps"); do
  for e in tollgate kamailio; do
    r0=$(ticks "$redis_pid")
    # shellcheck disable=SC2046 # one PID per word
    line=$("$bench/cpu-per-call.sh" "$e" "$(target_of $e)" "$cpu_calls" "$cpu_rate" $(pids_of $e))
    r1=$(ticks "$redis_pid")
    ok=$(field ok "$line")
    redis_ms=$(python3 -c "print(f'{($r1-$r0)/$(getconf CLK_TCK)*1000/max($ok,1)*1000:.1f}')")
    echo "cpu rep=$rep $line redis_ms_per_1000_calls=$redis_ms" | tee -a "$work/cpu.txt" >&2
    sleep "$settle"
  done
done

# 2. Offered-rate steps, alternating at each rate; an engine stops stepping at its first failed
#    call or when its achieved calls/s no longer rises by 3% in two tries of the step.
declare -A stopped best_cps best_rtd
for rate in $rates; do
  for e in tollgate kamailio; do
    [ -n "${stopped[$e]:-}" ] && continue
    for try in 1 2; do
      line=$("$bench/sipp/run.sh" "$(target_of $e)" "$step_calls" "$rate")
      echo "step $e rate=$rate try=$try $line" | tee -a "$work/steps.txt" >&2
      failed=$(field failed "$line") cps=$(field cps "$line")
      sleep "$settle"
      if [ "$failed" != 0 ]; then
        stopped[$e]=1
        break
      elif [ -n "${best_cps[$e]:-}" ] && [ "$cps" -lt $((best_cps[$e] * 103 / 100)) ]; then
        [ "$cps" -gt "${best_cps[$e]}" ] && best_cps[$e]=$cps best_rtd[$e]=$(field rtd_avg "$line")
        [ "$try" = 2 ] && stopped[$e]=1
      else
        best_cps[$e]=$cps best_rtd[$e]=$(field rtd_avg "$line")
        break
      fi
    done
  done
done

python3 - "$work/cpu.txt" "${best_cps[tollgate]:-0}" "${best_cps[kamailio]:-0}" \
  "${best_rtd[tollgate]:-?}" "${best_rtd[kamailio]:-?}" "$cpu_rate" <<'PY'
import re, statistics, sys
path, tg_cps, kam_cps, tg_rtd, kam_rtd, rate = sys.argv[1:]
cpu, redis, rtd = {}, {}, {}
for line in open(path):
    m = re.search(r"(tollgate|kamailio): cpu_ms_per_1000_calls=([\d.]+) .*failed=(\d+).*rtd_avg=(\S+) redis_ms_per_1000_calls=([\d.]+)", line)
    if m:
        e = m.group(1)
        cpu.setdefault(e, []).append(float(m.group(2)))
        redis.setdefault(e, []).append(float(m.group(5)))
        rtd.setdefault(e, []).append(m.group(4))
med = {e: statistics.median(v) for e, v in cpu.items()}
rmed = {e: statistics.median(v) for e, v in redis.items()}
print(f"\n{'':34} {'tollgate':>14} {'kamailio':>14} {'kamailio/tollgate':>18}")
t, k = med.get("tollgate", 0), med.get("kamailio", 0)
print(f"{'CPU ms / 1000 calls @ ' + rate + ' cps (median)':34} {t:>14.1f} {k:>14.1f} {k / t if t else 0:>17.1f}x")
print(f"{'  runs':34} {', '.join(f'{x:.0f}' for x in cpu.get('tollgate', [])):>14} {', '.join(f'{x:.0f}' for x in cpu.get('kamailio', [])):>14}")
print(f"{'  Redis CPU ms / 1000 calls':34} {rmed.get('tollgate', 0):>14.1f} {rmed.get('kamailio', 0):>14.1f}")
print(f"{'  rtd avg @ ' + rate + ' cps (last run)':34} {rtd.get('tollgate', ['?'])[-1]:>14} {rtd.get('kamailio', ['?'])[-1]:>14}")
tc, kc = int(tg_cps), int(kam_cps)
print(f"{'max calls/s with 0 failed calls':34} {tc:>14} {kc:>14} {tc / kc if kc else 0:>16.1f}x (tollgate/kamailio)")
print(f"{'  rtd avg at that rate':34} {tg_rtd:>14} {kam_rtd:>14}")
PY
