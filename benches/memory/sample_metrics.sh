#!/bin/bash
# sample_metrics.sh: where a running node's memory is, every 2 s, while a benchmark floods it.
# Prints the process RSS and the engine's own gauges from /metrics (MB for the byte gauges):
# jemalloc's live heap and resident pages, the transport's bytes (tasks included) and
# transactions, the decisions running, the risk store's bytes, the caller history and the pops
# stored. Stops with Ctrl-C.
#   PID=$(pgrep -f 'tollgate serve') URL=http://127.0.0.1:18080/metrics \
#   TOKEN=example-admin-token-change-me benches/memory/sample_metrics.sh
set -uo pipefail
pid=${PID:?PID of the tollgate process}
url=${URL:-http://127.0.0.1:18080/metrics}
token=${TOKEN:-example-admin-token-change-me}
gauges='memory_allocated_bytes|memory_resident_bytes|sip_transaction_bytes|sip_task_bytes|sip_transactions|sip_pending_decisions|risk_memory_bytes|pops_stored|risk_history_callers'
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status" 2>/dev/null)
  m=$(curl -s -m 1 -H "Authorization: Bearer $token" "$url" \
    | grep -E "^tollgate_($gauges) " \
    | awk '{sub("^tollgate_", "", $1); printf "%s=%d ", $1, ($1 ~ /bytes/ ? $2 / 1048576 : $2)}')
  echo "$(date +%T) rss_mb=$rss $m"
  sleep 2
done
