#!/usr/bin/env python3
"""summary.py DIR START END [RECOVER_MS]: one line of figures for a sipp run of
invite_302_or_503.xml made by overload.sh (its -trace_stat, -trace_rtt and -trace_logs files in
DIR).

START and END (seconds since the epoch, or 0 and a duration for a step) bound the window whose
302s count as goodput. With RECOVER_MS: the recovery time, from START to the last call of this run
not served fully (a 503, a failed call, or a 302 slower than RECOVER_MS ms), 0 if there was none.
"""
import csv
import glob
import os
import sys


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main():
    d, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    recover_ms = float(sys.argv[4]) if len(sys.argv) > 4 else None
    stat = list(csv.reader(open(os.path.join(d, "stat.csv")), delimiter=";"))
    col = {h: i for i, h in enumerate(stat[0])}
    last = stat[-1]
    total = int(last[col["TotalCallCreated"]])
    failed = int(last[col["FailedCall(C)"]])
    retrans = int(last[col["Retransmissions(C)"]])
    # Periods with a failed call (time of the period's end, seconds since the epoch).
    failed_at = [float(r[col["CurrentTime"]].split("\t")[-1]) for r in stat[1:]
                 if r[col["FailedCall(P)"]] not in ("", "0")]
    # sipp's start, seconds since the epoch ("date\ttime\tepoch").
    t_start = float(stat[1][col["StartTime"]].split("\t")[-1])
    # rtt rows: Date_ms;response_time_ms;rtd_no (the answer's time, ms since sipp's start).
    ok302 = []
    for path in glob.glob(os.path.join(d, "*_rtt.csv")):
        for row in csv.reader(open(path), delimiter=";"):
            if len(row) >= 3 and row[0][:1].isdigit() and row[2].strip() == "1":
                ok302.append((t_start + float(row[0]) / 1000, float(row[1])))
    # The scenario's log of each 503: "503;answer s;us;INVITE s;us".
    ok503 = []
    for path in glob.glob(os.path.join(d, "*_logs.log")):
        for line in open(path):
            f = line.strip().split(";")
            try:
                if len(f) == 5 and f[0] == "503":
                    got = float(f[1]) + float(f[2]) / 1e6
                    sent = float(f[3]) + float(f[4]) / 1e6
                    ok503.append((got, (got - sent) * 1000))
            except ValueError:  # a line cut short when sipp stopped
                pass
    if start == 0:  # a step: the window is the run itself
        t = [a for a, _ in ok302 + ok503]
        start = min(t) if t else 0
        end = start + end
    window = max(end - start, 1e-9)
    good = sum(1 for a, _ in ok302 if start <= a <= end)
    per_s = {}
    for a, _ in ok302:
        if start <= a <= end:
            per_s[int(a - start)] = per_s.get(int(a - start), 0) + 1
    secs = [per_s.get(i, 0) for i in range(int(window))]
    out = (f"calls={total} n302={len(ok302)} n503={len(ok503)} failed={failed} retrans={retrans} "
           f"goodput={good / window:.0f}/s goodput_median_s={pct(secs, 50) if secs else 0} "
           f"goodput_min_s={min(secs) if secs else 0} "
           f"p50_302_ms={pct([r for _, r in ok302], 50):.0f} p99_302_ms={pct([r for _, r in ok302], 99):.0f} "
           f"max_302_ms={max([r for _, r in ok302], default=float('nan')):.0f} "
           f"p50_503_ms={pct([r for _, r in ok503], 50):.0f} p99_503_ms={pct([r for _, r in ok503], 99):.0f}")
    if recover_ms is not None:
        # A failed call is seen when its 5 s (-recv_timeout) run out: it was made 5 s before.
        bad = [a for a, _ in ok503] + [a for a, r in ok302 if r > recover_ms] + [a - 5 for a in failed_at]
        last_bad = max(bad, default=start)
        out += f" bad_calls={len(bad)} recovery_s={max(0.0, last_bad - start):.2f}"
    print(out)


main()
