#!/usr/bin/env python3
"""Seed the fuzz corpora from the real strongSwan exchanges in ../shared/captures
(or any pcap given on the command line), so that the fuzzers start from messages
a peer no one here wrote instead of from nothing.

    python3 fuzz/seed.py [PCAP ...]      # writes fuzz/corpus/<target>/seed-*

Per capture (Ethernet, IPv4, UDP 500/4500 and ESP):
- ike_message:    every IKE message alone (non-ESP marker removed);
- ike_responder:  the initiator's messages of the exchange, joined with the
                  0xfe 0xed separator the target splits on, and each one alone;
- wire_udp_encap: every UDP/4500 payload as sent (marker, ESP or keepalive);
- wire_esp, ipsec_open: every ESP packet (SPI onwards), from UDP/4500 or IP 50.
Only the standard library; pcap (not pcapng), little or big endian.
"""

import hashlib
import pathlib
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT = sorted(HERE.parent.parent.glob("shared/captures/*/exchange.pcap"))


def packets(path):
    """Yield (src_ip, sport, dport, proto, payload) for IPv4 UDP and ESP frames."""
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        e = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        e = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file (pcapng is not read here)")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    if linktype != 1:
        raise SystemExit(f"{path}: link type {linktype}, only Ethernet (1) is read")
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(e + "I", data[off + 8 : off + 12])[0]
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        proto, src = ip[9], ip[12:16]
        l4 = ip[ihl:total]
        if proto == 17 and len(l4) >= 8:
            sport, dport = struct.unpack(">HH", l4[:4])
            yield src, sport, dport, 17, l4[8:]
        elif proto == 50:
            yield src, 0, 0, 50, l4


def main():
    pcaps = [pathlib.Path(p) for p in sys.argv[1:]] or DEFAULT
    if not pcaps:
        raise SystemExit("no captures found; give pcap paths")
    out = {}

    def put(target, blob):
        if blob:
            out.setdefault(target, set()).add(bytes(blob))

    for pcap in pcaps:
        initiator = None
        chain = []
        for src, sport, dport, proto, payload in packets(pcap):
            if proto == 50:
                put("wire_esp", payload)
                put("ipsec_open", payload)
                continue
            if 4500 in (sport, dport):
                put("wire_udp_encap", payload)
                if payload[:4] != b"\0\0\0\0":
                    if len(payload) > 1:  # ESP in UDP (a lone 0xff is a keepalive)
                        put("wire_esp", payload)
                        put("ipsec_open", payload)
                    continue
                payload = payload[4:]
            elif 500 not in (sport, dport):
                continue
            put("ike_message", payload)
            initiator = initiator or src
            if src == initiator:
                chain.append(payload)
                put("ike_responder", payload)
        if chain:
            put("ike_responder", b"\xfe\xed".join(chain))

    for target, blobs in sorted(out.items()):
        d = HERE / "corpus" / target
        d.mkdir(parents=True, exist_ok=True)
        for b in blobs:
            (d / ("seed-" + hashlib.sha1(b).hexdigest()[:16])).write_bytes(b)
        print(f"{target}: {len(blobs)} seeds in {d}")


if __name__ == "__main__":
    main()
