#!/usr/bin/env python3
"""Generates, once, the stir fuzz target's fixed test certificate (cert.pem, cert.der: self-signed,
P-256, a TNAuthList with SPC 709J; public.bin: its uncompressed public point) and the target's
seeds (../seeds/stir/): SHAKEN PASSporTs (RFC 8225, RFC 8588) signed with its key, in Identity
header values (RFC 8224), and the certificate, its TNAuthList and verstat values. Each seed's
first byte is the target's mode (0 Identity, 1 certificate, 2 TNAuthList, 3 verstat). The
private key is not kept: running this again makes a new key, certificate and seeds together.
Needs python3-cryptography. Run from fuzz/stir: ./make.py"""
import base64, datetime, json, os
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID, ObjectIdentifier

key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SHAKEN 709J fuzz test")])
tn_auth = bytes([0x30, 0x08, 0xA0, 0x06, 0x16, 0x04]) + b"709J"  # TNAuthList, SPC 709J (RFC 8226)
cert = (
    x509.CertificateBuilder()
    .subject_name(name).issuer_name(name).public_key(key.public_key())
    .serial_number(1)
    .not_valid_before(datetime.datetime(2026, 1, 1))
    .not_valid_after(datetime.datetime(2036, 1, 1))
    .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.5.5.7.1.26"), tn_auth), False)
    .sign(key, hashes.SHA256())
)
open("cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open("cert.der", "wb").write(cert.public_bytes(serialization.Encoding.DER))
open("public.bin", "wb").write(key.public_key().public_bytes(serialization.Encoding.X962,
    serialization.PublicFormat.UncompressedPoint))

b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def token(hdr, claims):
    si = b64u(json.dumps(hdr, separators=(",", ":")).encode()) + "." + \
         b64u(json.dumps(claims, separators=(",", ":")).encode())
    r, s = decode_dss_signature(key.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
    return si + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

x5u = "https://cert.example.org/passport.cer"
hdr = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u}
claims = {"attest": "A", "dest": {"tn": ["18005550100"]}, "iat": 1796380800,
          "orig": {"tn": "12125550001"}, "origid": "123e4567-e89b-12d3-a456-426655440000"}
seeds = {
    "a": (hdr, claims),
    "b-uri": (hdr, dict(claims, attest="B", dest={"tn": ["18005550100"], "uri": ["sip:x@y"]})),
    "c": (hdr, dict(claims, attest="C")),
}
os.makedirs("../seeds/stir", exist_ok=True)
def seed(n, b):
    open(f"../seeds/stir/{n}", "wb").write(b)
for n, (h, c) in seeds.items():
    seed(n, f"\0{token(h, c)};info=<{x5u}>;alg=ES256;ppt=shaken".encode())
seed("quoted", f'\0{token(hdr, claims)} ; info="{x5u}" ; ppt="shaken"'.encode())
seed("bare", f"\0{token(hdr, claims)}".encode())
seed("cert-der", b"\1" + cert.public_bytes(serialization.Encoding.DER))
seed("cert-pem", b"\1" + cert.public_bytes(serialization.Encoding.PEM))
seed("tn-auth", b"\2" + tn_auth)
seed("tn-auth-range", b"\2" + bytes([0x30, 0x0F, 0xA1, 0x0D, 0x30, 0x0B, 0x16, 0x06]) + b"121255" + bytes([0x02, 0x01, 0x64]))
for i, v in enumerate(["TN-Validation-Passed-A", "TN-Validation-Failed", "No-TN-Validation", "\"tn-validation-passed\""]):
    seed(f"verstat-{i}", ("\3" + v).encode())
