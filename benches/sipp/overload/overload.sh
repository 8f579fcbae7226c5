#!/bin/bash
# overload.sh: what overload shedding buys (issue 20 item 3), with sipp, on this machine.
#
# The release engine runs pinned to CPU 0 inside a cgroup v1 cpu quota (QUOTA % of one core,
# PERIOD_US period: a short period, so that the quota's throttling does not itself stall the
# engine for tens of ms), so that the engine and not sipp (pinned to CPU 1) is what saturates.
#   1. the peak: offered-rate steps (RATES, STEP_S seconds each) until a step has a failed call
#      or a 503; the peak is the highest rate before (a failing step is run once more first: one
#      stall of the shared machine must not end the search). PEAK=N skips the search.
#   2. for each mode in MODES (on: overload.toml; off: the same with `shedding = false`), REPS
#      times, alternating: a fresh engine, OVER_X (2) x the peak for OVER_S seconds; at the end of it
#      (while the overload's last calls are still being answered or retransmitted) a
#      second sipp offers RECOVER_RATE calls/s (default half the peak) for RECOVER_S seconds.
# Per run: goodput (302s per second over the overload), the 503s, calls with no answer (sipp's
# failed calls: nothing within 5 s, INVITE retransmitted at T1), p50/p99 of the 302s' response
# time (sipp's response-time timer 1, per call with -trace_rtt) and of the 503s' (logged by the
# scenario), the engine's
# peak RSS, and the recovery time: from the overload's end to the last recovery call that was
# not served fully (a 503, no answer, or a 302 slower than RECOVER_MS). Needs root (the
# cgroup), sipp, python3. Not for CI.
#
#   sudo benches/sipp/overload/overload.sh            # QUOTA=25 MODES="on off" REPS=2
#   PEAK=3000 MODES=on REPS=1 benches/sipp/overload/overload.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
bin=${BIN:-$repo/target/release/tollgate}
config=${CONFIG:-$here/overload.toml}
quota=${QUOTA:-25}
period_us=${PERIOD_US:-10000}
rates=${RATES:-1000 1500 2000 2500 3000 3500 4000 4500 5000 6000}
step_s=${STEP_S:-10}
over_s=${OVER_S:-60}
recover_s=${RECOVER_S:-20}
recover_ms=${RECOVER_MS:-50}
modes=${MODES:-on off}
reps=${REPS:-2}
settle=${SETTLE:-8} # seconds between runs: transactions stay T4 (5 s) after the ACK
target=127.0.0.1:5080
scenario=$here/invite_302_or_503.xml
csv=$repo/benches/sipp/peer/sipp/calls.csv

for tool in sipp python3 taskset; do
  command -v "$tool" >/dev/null || { echo "overload.sh: $tool is not installed" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "overload.sh: no $bin (cargo build --release -p tollgate-server)" >&2; exit 1; }
[ -d /sys/fs/cgroup/cpu ] || { echo "overload.sh: needs cgroup v1's cpu controller at /sys/fs/cgroup/cpu" >&2; exit 1; }

work=$(mktemp -d /tmp/tollgate-overload.XXXXXX)
cg=/sys/fs/cgroup/cpu/tollgate-overload-$$
tg=""
stop_engine() {
  if [ -n "$tg" ]; then kill "$tg" 2>/dev/null || true; wait "$tg" 2>/dev/null || true; tg=""; fi
}
cleanup() {
  stop_engine
  rmdir "$cg" 2>/dev/null || true
  echo "logs and raw results: $work" >&2
}
trap cleanup EXIT
mkdir -p "$cg"
echo "$period_us" >"$cg/cpu.cfs_period_us"
echo $((period_us * quota / 100)) >"$cg/cpu.cfs_quota_us"

sed 's/^shedding = true/shedding = false/' "$config" >"$work/off.toml"
grep -q '^shedding = false' "$work/off.toml" || { echo "overload.sh: $config has no 'shedding = true' line" >&2; exit 1; }
"$bin" check --config "$config" >/dev/null
"$bin" check --config "$work/off.toml" >/dev/null

# start_engine MODE: a fresh engine on CPU 0 in the cgroup; its decision log goes to a file.
start_engine() {
  local cfg=$config
  [ "$1" = off ] && cfg=$work/off.toml
  # The decision log (a line a call) goes through keep_warnings.py on sipp's CPU, which keeps
  # the rest and counts it: a file written on the engine's only runtime thread stalls it
  # whenever the disk is busy (other builds here), and it is ~1 GB a run. LOG=file writes it all
  # to the file instead.
  if [ "${LOG:-}" = file ]; then
    taskset -c 0 "$bin" serve --config "$cfg" >"$work/engine-$1.log" 2>&1 &
  else
    taskset -c 0 "$bin" serve --config "$cfg" \
      > >(taskset -c 1 python3 "$here/keep_warnings.py" "$work/engine-$1.log") 2>&1 &
  fi
  tg=$!
  echo "$tg" >"$cg/cgroup.procs"
  sleep 1.5
  kill -0 "$tg" || { cat "$work/engine-$1.log" >&2; exit 1; }
}

# sipp_run DIR RATE CALLS [extra sipp args]: runs the scenario from DIR (its trace files land
# there) on CPU 1; open loop (no cap on calls in flight, so the offered rate holds).
sipp_run() {
  local dir=$1 rate=$2 calls=$3
  shift 3
  mkdir -p "$dir"
  (cd "$dir" && taskset -c 1 sipp "$target" -sf "$scenario" -inf "$csv" -m "$calls" -r "$rate" \
    -l 1000000 -i 127.0.0.1 -p 0 -recv_timeout 5000 -timeout_error -nostdin \
    -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 -trace_logs "$@" >sipp.out 2>&1) || true
}

# summary DIR START_S END_S: one line of figures for a sipp run (python reads its traces).
summary() {
  python3 "$here/summary.py" "$@"
}

# keep_log LOG DIR: the engine's log without its decision lines, so that the runs do not fill
# the disk (~1 kB a call).
keep_log() {
  grep -v '"message":"decision"' "$1" >"$2/engine-warnings.log" || true
  rm -f "$1"
}

peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$tg/status" 2>/dev/null || echo 0; }

echo "# overload.sh $(date -u +%FT%TZ) quota=${quota}% of CPU 0 (period ${period_us} us), sipp on CPU 1; load: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "${PEAK:-}" ]; then
  start_engine on
  peak=0 retried=""
  for r in $rates; do
    while :; do
      d=$work/step-$r${retried:+-again}
      sipp_run "$d" "$r" $((r * step_s))
      line=$(summary "$d" 0 "$step_s")
      echo "step rate=$r $line"
      failed=$(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$line")
      shed=$(sed -n 's/.* n503=\([0-9]*\).*/\1/p' <<<"$line")
      sleep "$settle"
      if [ "$failed" = 0 ] && [ "$shed" = 0 ]; then peak=$r; retried=""; break; fi
      [ -n "$retried" ] && break 2
      retried=1
    done
  done
  stop_engine
  keep_log "$work/engine-on.log" "$work"
  sleep 2
else
  peak=$PEAK
fi
[ "$peak" -gt 0 ] || { echo "overload.sh: no step without a failed call" >&2; exit 1; }
over=$((peak * ${OVER_X:-2}))
recover_rate=${RECOVER_RATE:-$((peak / 2))}
echo "peak (0 failed, 0 503): $peak calls/s; overload: $over calls/s for ${over_s} s; then $recover_rate calls/s for ${recover_s} s"

for rep in $(seq "$reps"); do
  for mode in $modes; do
    start_engine "$mode"
    d=$work/over-$mode-$rep
    t0=$(date +%s.%N)
    sipp_run "$d/over" "$over" $((over * over_s)) &
    sp=$!
    sleep "$(python3 -c "import time; print(max(0, $t0 + $over_s - time.time()))")"
    t_end=$(date +%s.%N)
    sipp_run "$d/recover" "$recover_rate" $((recover_rate * recover_s))
    wait "$sp"
    rss=$(peak_rss_kb)
    o=$(summary "$d/over" "$t0" "$t_end")
    rc=$(summary "$d/recover" "$t_end" "$(python3 -c "print($t_end + $recover_s)")" "$recover_ms")
    echo "run mode=$mode rep=$rep overload: $o peak_rss_mb=$((rss / 1024)) | recovery: $rc"
    stop_engine
    keep_log "$work/engine-$mode.log" "$d"
    sleep "$settle"
  done
done
