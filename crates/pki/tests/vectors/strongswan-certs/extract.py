#!/usr/bin/env python3
"""Extracts the known-answer vectors of tests/strongswan_ike_auth.rs from the
capture and the initiator's charon log in this directory:

  exchange.pcap   two IKEv2 exchanges between two strongSwan 5.9.8 charons
                  (IKE_SA "ecdsa": ECDSA P-256 certs; IKE_SA "rsa": RSA-2048 certs,
                  initiator with rsa_pss = yes, responder with PKCS#1 v1.5)
  initiator.log   charon log of the initiator (ike = 4): SK_* keys and the
                  "octets = message + nonce + prf(Sk_px, IDx')" each side signed

Writes auth-vectors.txt: `name = hex` lines. Needs tshark (for IP reassembly).
"""
import re
import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent


def log_chunks(path):
    """(name, bytes) for each `NAME => N bytes @ 0x..` hex dump in a charon log."""
    lines = path.read_text().splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = re.match(r"\d+\[IKE\] (.*) => (\d+) bytes @ 0x[0-9a-f]+$", lines[i])
        if not m:
            i += 1
            continue
        name, n = m.group(1), int(m.group(2))
        data = bytearray()
        i += 1
        while len(data) < n and i < len(lines):
            dm = re.match(r"\d+\[IKE\]\s+\d+: (.{47})", lines[i] + " " * 47)
            if not dm:
                break
            data += bytes.fromhex(dm.group(1).replace(" ", ""))
            i += 1
        assert len(data) == n, (name, n, len(data))
        out.append((name, bytes(data)))
    return out


def udp_payloads(pcap):
    res = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.number", "-e", "udp.payload"],
        capture_output=True, text=True, check=True)
    msgs = []
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1]:
            msgs.append(bytes.fromhex(parts[1]))
    return msgs


chunks = log_chunks(here / "initiator.log")
keys = [(n, d) for n, d in chunks if n.startswith("Sk_")]
octets = [d for n, d in chunks if n.startswith("octets")]
msgs = udp_payloads(here / "exchange.pcap")
assert len(msgs) == 8, len(msgs)
assert len(octets) == 4, len(octets)

out = []
for sa, base in (("ecdsa", 0), ("rsa", 1)):
    k = dict(keys[base * 7:(base + 1) * 7])
    m = msgs[base * 4:(base + 1) * 4]
    out.append(f"# IKE_SA {sa}")
    out.append(f"{sa}.init_req = {m[0].hex()}")
    out.append(f"{sa}.init_resp = {m[1].hex()}")
    out.append(f"{sa}.auth_req = {m[2].hex()}")
    out.append(f"{sa}.auth_resp = {m[3].hex()}")
    for name in ("Sk_ai secret", "Sk_ar secret", "Sk_ei secret", "Sk_er secret"):
        out.append(f"{sa}.{name.split()[0].lower()} = {k[name].hex()}")
    out.append(f"{sa}.octets_i = {octets[base * 2].hex()}")
    out.append(f"{sa}.octets_r = {octets[base * 2 + 1].hex()}")
(here / "auth-vectors.txt").write_text("\n".join(out) + "\n")
print("wrote", here / "auth-vectors.txt")
