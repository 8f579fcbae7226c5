#!/usr/bin/env python3
"""Writes the committed seeds of the extract, tcp_framing, rules and config targets from the
repository's own examples: config/ (the example configs and rule files), the embedded
defaults, tests/data/rfc4475 (RFC 4475 torture messages) and the header forms the extraction
tests use. The stir seeds come from ../stir/make.py. Run from fuzz/seeds: ./make.py"""
import glob, os, struct

def write(target, name, data):
    os.makedirs(target, exist_ok=True)
    open(os.path.join(target, name), "wb").write(data)

# extract: a flags byte, then 15 fields separated by 0xFF (see fuzz_targets/extract.rs).
def fields(flags, *f):
    f = list(f) + [""] * (15 - len(f))
    return bytes([flags]) + b"\xff".join(x.encode() for x in f)

token = open("stir/a", "rb").read()[1:].decode() if os.path.exists("stir/a") else \
    "eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln;info=<https://cert.example.org/a.cer>;alg=ES256;ppt=shaken"
users = ["+18005550100", "+12125550001", "+18005550100", "+12015550002", "+12015550003",
         "+18005550111", "+18005550112", "+18005550113", "+12125550009"]
write("extract", "users-sip", fields(1, *users, token, "id", ";cpc=ordinary;oli=62;verstat=TN-Validation-Passed"))
write("extract", "users-tel", fields(3, *users, token, "none", ";phone-context=+1;cpc=payphone"))
write("extract", "users-national", fields(1, "8005550100", "(212) 555-0001", "800-555-0100",
      "2015550002", "1-201-555-0003", "8005550111"))
write("extract", "headers", fields(0,
    "+18005550100",
    '"Alice Smith" <sip:+12125550001@carrier.example.net;user=phone>;tag=a1',
    "<sip:+18005550100@tg.example;user=phone>",
    "<tel:+12125550002;cpc=payphone;oli=27>, <sip:+12125550002@c.example;user=phone>",
    "<sip:+12125550003@c.example;user=phone>;party=calling;screen=no;privacy=full",
    "<sip:+18005550111@c.example>;reason=unconditional;counter=1, <sip:+18005550112@c.example>;reason=user-busy",
    "<sip:+18005550113@c.example?Reason=SIP%3Bcause%3D302>;index=1, <sip:+18005550114@c.example>;index=1.1",
    "<sip:+18005550115@c.example;user=phone>",
    "<sip:+12125550009@c.example;user=phone>;npi=ISDN;noa=national",
    token, "id;user;header", "", "certificate expired", "Call-Info: <https://x.example/c>;purpose=jwscard",
    "Decline"))
write("extract", "anonymous", fields(0, "+18005550100",
    '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x', "<sip:+18005550100@tg.example>",
    "<sip:+12125550002@c.example;user=phone;verstat=TN-Validation-Failed>", "", "", "", "", "",
    "", "id", "", "", "Retry-After: 5", "Service Unavailable"))
write("extract", "injection", fields(0,
    "x%0D%0AContact%3A%20%3Csip%3Aattacker%40evil.example%3E",
    "<sip:x%0D%0AContact%3A%20%3Csip%3Aattacker%40evil.example%3E@evil.example>;tag=1",
    "<sip:%0D%0A%0D%0ASIP%2F2.0%20200%20OK@tg.example>", "", "", "", "", "", "", "", "", "",
    "bad\r\nContact: <sip:evil@x>", "Contact: <sip:evil@x>", "Decline\r\nX-Evil: 1"))
write("extract", "emergency", fields(1, "911", "+12125550001", "911", "", "", "112", "933"))
write("extract", "sos", fields(0, "+18005550100", "<sip:+12125550001@c.example>;tag=1",
    "<urn:service:sos>", "", "", "<sip:911@c.example>"))

# tcp_framing: n, 2n bytes of u16 split offsets, the stream (see fuzz_targets/tcp_framing.rs).
rfc = {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob("../../tests/data/rfc4475/*.dat"))}
def stream(cuts, data):
    return bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + data
invite = rfc["dblreq.dat"] if "dblreq.dat" in rfc else next(iter(rfc.values()))
for name in ["wsinv.dat", "mpart01.dat", "ncl.dat", "cparam01.dat", "esc01.dat", "invut.dat"]:
    if name in rfc:
        write("tcp_framing", name, stream([], rfc[name]))
        write("tcp_framing", "two-" + name, stream([7, len(rfc[name]) + 3], b"\r\n" + rfc[name] + b"\r\n\r\n" + rfc[name]))
write("tcp_framing", "keepalive-partial", stream([2, 4], b"\r\n\r\n" + invite[: len(invite) // 2]))
write("tcp_framing", "no-length", stream([1], b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n"))
write("tcp_framing", "conflict", stream([30], b"INVITE sip:x SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab"))

# rules: a role byte, then a rule file (see fuzz_targets/rules.rs).
for p in sorted(glob.glob("../../config/routes/*.toml")):
    name = os.path.basename(p)
    if name == "queues.toml":
        continue
    text = open(p, "rb").read()
    write("rules", name, (b"\0" if name == "default.toml" else b"\1") + text)
    write("rules", "emergency-" + name, (b"\2" if name == "default.toml" else b"\3") + text)

# config: the example configs and the embedded defaults.
for p in sorted(glob.glob("../../config/*.toml")) + ["../../crates/server/src/embedded.toml"]:
    write("config", os.path.basename(p), open(p, "rb").read())
# The example config with a [stir] section (as tests/wiring.rs writes one).
write("config", "with-stir.toml", open("../../config/tollgate.toml", "rb").read()
      + b'\n[stir]\ntrust_anchors_dir = "anchors"\nallowed_hosts = ["cert.example.org"]\nfreshness_s = 60\n')
