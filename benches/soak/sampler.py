#!/usr/bin/env python3
"""Samples a running node every INTERVAL seconds for benches/soak.sh and appends one CSV row:
elapsed s, RSS MB, open fds, CPU % of one core over the interval, decision p50 and p99 in ms
over the interval (from the tollgate_decision_seconds histogram's bucket deltas), transactions
held, calls answered in the interval, Redis used_memory MB.
usage: sampler.py PID METRICS_URL TOKEN REDIS_PORT INTERVAL OUT.csv"""
import os
import subprocess
import sys
import time
import urllib.request

pid, url, token, redis_port, interval, out = sys.argv[1:7]
interval = float(interval)
tick = os.sysconf("SC_CLK_TCK")


def cpu_ticks():
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def scrape():
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(req, timeout=5).read().decode()
    buckets, transactions, calls = {}, 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith("tollgate_decision_seconds_bucket"):
            le = name.split('le="', 1)[1].split('"', 1)[0]
            le = float("inf") if le == "+Inf" else float(le)
            buckets[le] = buckets.get(le, 0.0) + float(value)
        elif name.startswith("tollgate_sip_transactions") and not name.startswith("tollgate_sip_transactions_"):
            transactions += float(value)
        elif name.startswith("tollgate_calls_total"):
            calls += float(value)
    return buckets, transactions, calls


def quantile(delta, q):
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return 0.0
    for le in sorted(delta):
        if delta[le] >= q * total:
            return le * 1000 if le != float("inf") else 5000.0
    return 0.0


def redis_mb():
    try:
        info = subprocess.run(["redis-cli", "-p", redis_port, "info", "memory"], capture_output=True, text=True, timeout=5).stdout
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1]) / 1048576
    except Exception:
        pass
    return 0


start = time.time()
last_cpu, last_t = cpu_ticks(), time.time()
last_b, _, last_calls = scrape()
with open(out, "a") as f:
    f.write("elapsed_s,rss_mb,fds,cpu_pct,p50_ms,p99_ms,transactions,calls,redis_mb\n")
while True:
    time.sleep(interval)
    try:
        c, t = cpu_ticks(), time.time()
        b, transactions, calls = scrape()
    except (OSError, ValueError):
        break
    delta = {le: b.get(le, 0) - last_b.get(le, 0) for le in b}
    row = [
        f"{t - start:.0f}", f"{rss_mb():.1f}", str(len(os.listdir(f"/proc/{pid}/fd"))),
        f"{100 * (c - last_cpu) / tick / (t - last_t):.1f}",
        f"{quantile(delta, 0.5):.3f}", f"{quantile(delta, 0.99):.3f}",
        f"{transactions:.0f}", f"{calls - last_calls:.0f}", f"{redis_mb():.1f}",
    ]
    with open(out, "a") as f:
        f.write(",".join(row) + "\n")
    last_cpu, last_t, last_b, last_calls = c, t, b, calls
