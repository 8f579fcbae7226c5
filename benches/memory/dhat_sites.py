#!/usr/bin/env python3
"""Heap at its peak by allocation site, from a dhat-heap.json (`tollgate serve` built with
`--features tollgate-server/dhat-heap`). Each site is named by its innermost frames in this
repository's crates (tollgate_*), so a structure's bytes add up under the function that
allocates them. Usage: dhat_sites.py dhat-heap.json [callers] [top]"""
import json, re, sys
from collections import defaultdict

d = json.load(open(sys.argv[1]))
callers = int(sys.argv[2]) if len(sys.argv) > 2 else 0
top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
ftbl = d["ftbl"]
ours = re.compile(r"tollgate_\w+::")
def short(f):
    f = re.sub(r"^0x[0-9a-f]+: ", "", f)
    f = re.sub(r" \(.*/(crates|benches)/", r" (\1/", f)
    f = re.sub(r"<[^<>]*>", "", f)
    return f[:150]
sites = defaultdict(lambda: [0, 0, 0, 0])
total_g = total_e = 0
for pp in d["pps"]:
    frames = [ftbl[i] for i in pp["fs"]]
    mine = [short(f) for f in frames if ours.search(f)][:2]
    key = " <- ".join(mine) if mine else "(outside tollgate) " + short(frames[min(3, len(frames) - 1)])
    s = sites[key]
    s[0] += pp["gb"]; s[1] += pp["gbk"]; s[2] += pp["eb"]; s[3] += pp["ebk"]
    total_g += pp["gb"]; total_e += pp["eb"]
print(f"heap at peak (t-gmax): {total_g/1e6:.1f} MB; at exit: {total_e/1e6:.1f} MB")
for k, (gb, gbk, eb, ebk) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:top]:
    per = f" {gb/callers:7.1f} B/caller" if callers else ""
    print(f"{gb/1e6:9.2f} MB {gbk:>9} blocks{per}  {k}")
