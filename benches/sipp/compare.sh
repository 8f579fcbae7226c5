#!/bin/bash
# compare.sh: floor302, Tollgate and Kamailio side by side with sipp, on this machine, in one run.
#
# Engines, each on its own UDP port of 127.0.0.1:
#   floor     benches/sipp/peer/floor/floor302.c (5090): a canned 302, recvmmsg/sendmmsg, no parsing,
#             no transactions, no decision: the kernel's and the loopback's share of a call;
#   tollgate  target/release/tollgate with $PARITY (5080; default benches/sipp/parity-redis.toml);
#   kamailio  benches/sipp/peer/kamailio/kamailio.cfg (5070), every process of it counted.
# Then, the engines taking turns:
#   1. CPU ms per 1000 calls at each of CPU_RATES calls/s offered (CPU_CALLS calls or 10 s of calls,
#      whichever is more), REPS times each; CPU is counted from the start of each sipp run until
#      6 s after its end, so the timer work of the last calls counts;
#   2. the offered-rate steps (RATES, STEP_S seconds of calls each) until an engine has a failed
#      call: its best rate with 0 failed calls and no retransmission is its max calls/s;
# prints a table of medians and stops everything. Not for CI: it needs kamailio, sipp, gcc and
# redis-server, and the machine to itself for ~20 minutes. See README.md ("Benchmarks").
#
# PIN=1 (default): each engine on CPU 0 (taskset, Kamailio's processes included), sipp and Redis
#   on CPU 1: the shared machine makes unpinned max-rate figures swing by ±30 %. PIN=0: unpinned.
# QUOTA=25: during the rate steps (not the CPU runs), each engine is capped at 25 % of its core
#   (a cgroup v1 cpu quota under /sys/fs/cgroup/cpu; root), so that the engine and not sipp
#   (~8,000-10,000 calls/s on one core here) is what saturates: max calls/s then compares the
#   engines on the same CPU budget.
# ENGINES="floor tollgate kamailio" picks engines; NO_BUILD=1 or TOLLGATE_BIN=path skip the build.
set -euo pipefail

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
bench=${BENCH_DIR:-$repo/benches/sipp/peer}
reps=${REPS:-3}
cpu_rates=${CPU_RATES:-${CPU_RATE:-1000 3000}}
cpu_calls=${CPU_CALLS:-30000}
rates=${RATES:-2000 3000 4000 5000 6000 8000 10000 12000 14000 16000}
step_s=${STEP_S:-10}
settle=${SETTLE:-6}
pin=${PIN:-1}
quota=${QUOTA:-}
engines=${ENGINES:-floor tollgate kamailio}
tollgate_bin=${TOLLGATE_BIN:-$repo/target/release/tollgate}
parity=${PARITY:-$repo/benches/sipp/parity-redis.toml}
declare -A T=([floor]=127.0.0.1:5090 [tollgate]=127.0.0.1:5080 [kamailio]=127.0.0.1:5070)

for tool in sipp kamailio redis-cli redis-server python3 gcc taskset; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is not installed (apt-get install sip-tester kamailio kamailio-redis-modules kamailio-phonenum-modules redis-server gcc)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/tollgate-compare.XXXXXX)
declare -A P
redis_started="" groups=()
cleanup() {
  for e in "${!P[@]}"; do kill ${P[$e]} 2>/dev/null || true; done
  [ -n "$redis_started" ] && redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
  for g in "${groups[@]}"; do for _ in 1 2 3 4 5; do rmdir "$g" 2>/dev/null && break; sleep 1; done; done
  echo "logs and raw results: $work" >&2
}
trap cleanup EXIT

# Commands run as "${engine_cpu[@]}" CMD (not through a function: "$!" must be the engine's PID).
engine_cpu=() load_cpu=()
[ "$pin" = 1 ] && engine_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
on_load_cpu() { "${load_cpu[@]}" "$@"; }

if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  on_load_cpu redis-server --daemonize yes --port 6379 --save "" --appendonly no >/dev/null
  redis_started=1
  sleep 1
fi
redis_pid=$(redis-cli -p 6379 info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
[ "$pin" = 1 ] && taskset -pc 1 "$redis_pid" >/dev/null

if [ -z "${NO_BUILD:-}" ] && [ -z "${TOLLGATE_BIN:-}" ]; then
  echo "building tollgate (release)..." >&2
  cargo build --quiet --release -p tollgate-server --manifest-path "$repo/Cargo.toml"
fi
# parity-redis.toml adds the Redis work Kamailio's config does (velocity counter, blocklist); its
# block entries are added to Redis first.
if grep -q '^store = "redis"' "$parity"; then
  for n in +12125550000 +4930000000; do
    "$tollgate_bin" list add --config "$parity" block "$n" --reason "kamailio parity" >/dev/null
  done
fi

for e in $engines; do
  case $e in
    floor)
      gcc -O2 -o "$work/floor302" "$bench/floor/floor302.c"
      "${engine_cpu[@]}" "$work/floor302" 5090 >"$work/floor.log" 2>&1 &
      P[floor]=$!
      ;;
    tollgate)
      "${engine_cpu[@]}" "$tollgate_bin" serve --config "$parity" >"$work/tollgate.log" 2>&1 &
      P[tollgate]=$!
      ;;
    kamailio)
      "${engine_cpu[@]}" kamailio -f "$bench/kamailio/kamailio.cfg" -P "$work/kamailio.pid" -w "$work" -E -m 1024 -M 32 \
        >"$work/kamailio.log" 2>&1
      for _ in $(seq 50); do [ -s "$work/kamailio.pid" ] && break; sleep 0.1; done
      ;;
  esac
done
sleep 3
for e in $engines; do
  if [ "$e" = kamailio ]; then
    # One main process and its forked children (receivers, timers, ...): count them all.
    kam_main=$(cat "$work/kamailio.pid")
    P[kamailio]="$kam_main $(pgrep -d ' ' -P "$kam_main")"
  fi
  for p in ${P[$e]}; do kill -0 "$p" || { echo "$e did not start:" >&2; cat "$work/$e.log" >&2; exit 1; }; done
done
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
ticks() { local t=0 p; for p in "$@"; do set -- $(sed 's/^.*) //' "/proc/$p/stat"); t=$((t + ${12} + ${13})); done; echo $t; }

echo "warm-up (2000 calls each)..." >&2
for e in $engines; do on_load_cpu "$bench/sipp/run.sh" "${T[$e]}" 2000 1000 >/dev/null; done
sleep "$settle"

# 1. CPU per call, uncapped: cpu-per-call.sh, REPS times at each rate, the engines alternating;
#    Redis's CPU noted on the side.
for rate in $cpu_rates; do
  calls=$((rate * 10 > cpu_calls ? rate * 10 : cpu_calls))
  for rep in $(seq "$reps"); do
    for e in $engines; do
      r0=$(ticks "$redis_pid")
      # shellcheck disable=SC2086 # one PID per word
      line=$(on_load_cpu env SETTLE="$settle" "$bench/cpu-per-call.sh" "$e" "${T[$e]}" "$calls" "$rate" ${P[$e]})
      r1=$(ticks "$redis_pid")
      ok=$(field ok "$line")
      redis_ms=$(python3 -c "print(f'{($r1-$r0)/$(getconf CLK_TCK)*1000/max($ok,1)*1000:.1f}')")
      echo "cpu rate=$rate rep=$rep $line redis_ms_per_1000_calls=$redis_ms" | tee -a "$work/cpu.txt" >&2
    done
  done
done

# 2. The offered-rate steps, each engine capped at QUOTA % of its core if set.
if [ -n "$quota" ]; then
  for e in $engines; do
    g=/sys/fs/cgroup/cpu/tollgate-compare-$e-$$
    mkdir -p "$g"
    groups+=("$g")
    echo 100000 >"$g/cpu.cfs_period_us"
    echo $((quota * 1000)) >"$g/cpu.cfs_quota_us"
    for p in ${P[$e]}; do for t in /proc/"$p"/task/*; do echo "${t##*/}" >"$g/tasks"; done; done
  done
fi
declare -A stopped
for rate in $rates; do
  for e in $engines; do
    [ -n "${stopped[$e]:-}" ] && continue
    line=$(on_load_cpu "$bench/sipp/run.sh" "${T[$e]}" $((rate * step_s)) "$rate")
    echo "step $e rate=$rate $line" | tee -a "$work/steps.txt" >&2
    [ "$(field failed "$line")" != 0 ] && stopped[$e]=1
    sleep "$settle"
  done
done

python3 - "$work/cpu.txt" "$work/steps.txt" "$engines" "$(basename "$parity")" "$pin" "${quota:-none}" <<'PY'
import re, statistics, sys
cpu_path, steps_path, engines, parity, pin, quota = sys.argv[1:]
engines = engines.split()
cpu, redis = {}, {}
for line in open(cpu_path):
    m = re.search(r"rate=(\d+) rep=\d+ (\w+): cpu_ms_per_1000_calls=([\d.]+) .*redis_ms_per_1000_calls=([\d.]+)", line)
    if m:
        rate, e = int(m.group(1)), m.group(2)
        cpu.setdefault((rate, e), []).append(float(m.group(3)))
        redis.setdefault((rate, e), []).append(float(m.group(4)))
best, nofail = {}, {}
for line in open(steps_path):
    m = re.search(r"step (\w+) rate=(\d+) .*failed=(\d+) retrans=(\d+) .*cps=(\d+)", line)
    if m and m.group(3) == "0":
        nofail[m.group(1)] = max(nofail.get(m.group(1), 0), int(m.group(5)))
        if m.group(4) == "0":
            best[m.group(1)] = max(best.get(m.group(1), 0), int(m.group(5)))
print(f"\n{parity}, pinned={pin}, quota for the steps={quota}; medians of the runs")
print(f"{'':40}" + "".join(f"{e:>12}" for e in engines) + f"{'kam/tollgate':>14}")
for rate in sorted({r for r, _ in cpu}):
    med = {e: statistics.median(cpu[(rate, e)]) for e in engines if (rate, e) in cpu}
    ratio = med.get("kamailio", 0) / med["tollgate"] if med.get("tollgate") else 0
    print(f"{'CPU ms / 1000 calls @ %d cps' % rate:40}" + "".join(f"{med.get(e, 0):>12.1f}" for e in engines) + f"{ratio:>13.1f}x")
    for e in engines:
        print(f"{'  runs, ' + e:40}" + ", ".join(f"{x:.0f}" for x in cpu.get((rate, e), [])))
    rmed = {e: statistics.median(redis[(rate, e)]) for e in engines if (rate, e) in redis}
    print(f"{'  Redis CPU ms / 1000 calls':40}" + "".join(f"{rmed.get(e, 0):>12.1f}" for e in engines))
    if med.get("floor") and med.get("tollgate"):
        print(f"{'  tollgate / floor':40}{med['tollgate'] / med['floor']:>24.1f}x")
for name, b in (("max calls/s, 0 failed, 0 retransmitted", best), ("max calls/s, 0 failed", nofail)):
    ratio = b.get("tollgate", 0) / b["kamailio"] if b.get("kamailio") else 0
    print(f"{name:40}" + "".join(f"{b.get(e, 0):>12}" for e in engines) + f"{ratio:>13.1f}x (tollgate/kamailio)")
PY
