#!/usr/bin/env python3
"""Seed the fuzz corpora, so that the fuzzers start from real inputs instead of
from nothing. The seeds are committed in fuzz/seeds/<target>/ (scripts/fuzz.sh
gives libFuzzer that folder next to the working corpus fuzz/corpus/<target>/).

    python3 fuzz/seed.py [PCAP ...]      # rewrites fuzz/seeds/<target>/seed-*

From the strongSwan exchanges in crates/ike/testdata/captures (or any pcap
given on the command line), per capture (Ethernet, IPv4, UDP 500/4500 and ESP):
Per capture (Ethernet, IPv4, UDP 500/4500 and ESP):
- ike_message:    every IKE message alone (non-ESP marker removed);
- ike_responder:  the initiator's messages of the exchange, joined with the
                  0xfe 0xed separator the target splits on, and each one alone;
- wire_udp_encap: every UDP/4500 payload as sent (marker, ESP or keepalive);
- wire_esp, ipsec_open: every ESP packet (SPI onwards), from UDP/4500 or IP 50.
From the repository's files:
- policy_parse: policy/*.toml and crates/policy/tests/bad/*.toml;
- pki_cert: the test certificates (DER, selector 0; PEM, selector 4), keys
  (selector 3), and an ID payload body (selector 2).
Built here, header by header:
- wire_ip, wire_gre, distrib_gre_target: IPv4/IPv6 TCP and UDP packets, bare
  and inside GRE (plain, with key, sequence number, checksum);
- wire_arp: ARP requests, replies, gratuitous ARP and an RFC 5227 probe;
- distrib_cluster_msg: each message body the decoder knows, after its type;
- store_record: an IKE and a Child SA record (JSON plaintexts that belong under
  the target's keys), one of a future schema, and a forged sealed value.
Only the standard library; pcap (not pcapng), little or big endian.
"""

import base64
import hashlib
import pathlib
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT = sorted(REPO.glob("crates/ike/testdata/captures/*/exchange.pcap"))


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


def csum(b):
    """The Internet checksum (RFC 1071)."""
    if len(b) % 2:
        b += b"\0"
    n = sum(struct.unpack(f">{len(b) // 2}H", b))
    while n > 0xFFFF:
        n = (n & 0xFFFF) + (n >> 16)
    return struct.pack(">H", ~n & 0xFFFF)


def ipv4(src, dst, proto, payload, options=b""):
    ihl = 5 + len(options) // 4
    h = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 0x1234,
                    0x4000, 64, proto, 0, bytes(src), bytes(dst)) + options
    return h[:10] + csum(h) + h[12:] + payload


def ipv6(src, dst, proto, payload):
    return struct.pack(">IHBB16s16s", 6 << 28, len(payload), proto, 64,
                       bytes(src), bytes(dst)) + payload


def tcp_syn(sport, dport):
    mss = b"\x02\x04\x05\xb4\x01\x01\x04\x02"
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, (5 + 2) << 4, 0x02,
                       64240, 0, 0) + mss


def udp(sport, dport, data):
    return struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data


def gre(inner, key=None, seq=None, checksum=False, proto=0x0800):
    flags = (0x8000 if checksum else 0) | (0x2000 if key is not None else 0)
    flags |= 0x1000 if seq is not None else 0
    h = struct.pack(">HH", flags, proto)
    opt = b"\0\0\0\0" if checksum else b""
    opt += struct.pack(">I", key) if key is not None else b""
    opt += struct.pack(">I", seq) if seq is not None else b""
    pkt = h + opt + inner
    if checksum:
        pkt = pkt[:4] + csum(pkt) + pkt[6:]
    return pkt


def arp(op, smac, sip, tmac, tip, dst=b"\xff" * 6):
    body = struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, smac, bytes(sip),
                       tmac, bytes(tip))
    return dst + smac + b"\x08\x06" + body


def structural(put):
    client, dvipa = [192, 0, 2, 10], [198, 51, 100, 7]
    v6a, v6b = [0x20, 1, 0xd, 0xb8] + [0] * 11 + [1], [0x20, 1, 0xd, 0xb8] + [0] * 11 + [7]
    packets = [
        ipv4(client, dvipa, 6, tcp_syn(40000, 80)),
        ipv4(client, dvipa, 17, udp(5353, 53, b"query")),
        ipv4(client, dvipa, 6, tcp_syn(40001, 443), options=b"\x01\x01\x01\x00"),
        ipv6(v6a, v6b, 6, tcp_syn(40002, 80)),
        ipv6(v6a, v6b, 17, udp(1000, 2000, b"x" * 20)),
    ]
    for p in packets:
        put("wire_ip", p)
    for i, p in enumerate(packets):
        put("wire_gre", gre(p))
        put("wire_gre", gre(p, key=1, seq=i, checksum=True))
        put("distrib_gre_target", gre(p, key=1))
        put("distrib_gre_target", gre(p, proto=0x86DD if p[0] >> 4 == 6 else 0x0800))
        put("distrib_gre_target", p)
    mac, other = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    vipa, peer = [192, 0, 2, 1], [192, 0, 2, 20]
    put("wire_arp", arp(1, other, peer, b"\0" * 6, vipa))            # who has the VIPA
    put("wire_arp", arp(2, mac, vipa, other, peer, dst=other))      # reply
    put("wire_arp", arp(1, mac, vipa, b"\0" * 6, vipa))             # gratuitous
    put("wire_arp", arp(1, other, [0, 0, 0, 0], b"\0" * 6, vipa))   # RFC 5227 probe
    cluster(put)


def cluster(put):
    def ip4(a):
        return b"\x04" + bytes(a)

    flow = b"\x06" + ip4([192, 0, 2, 10]) + struct.pack(">H", 40000) \
        + ip4([198, 51, 100, 7]) + struct.pack(">H", 443)
    bodies = [
        (1, b"\x01\x01"),                                          # Hello gateway, link up
        (1, b"\x02\x00"),                                          # Hello target, link down
        (2, b"\x01"),                                              # Keepalive
        (3, b"\x00\x00"),                                          # empty DVIPA list
        (4, struct.pack(">I", 3) + ip4([198, 51, 100, 7]) + struct.pack(">H", 443) + b"\x01"),
        (5, struct.pack(">I", 3) + b"\x01" + flow),                 # NewConn over IPsec
        (5, struct.pack(">I", 3) + b"\x02" + flow),                 # existing connection
        (6, struct.pack(">I", 3) + flow),                           # ConnEnd
        (7, b"\x00"),                                              # ConnQuery, all
        (7, b"\x01" + ip4([198, 51, 100, 7])),                      # ConnQuery, one DVIPA
    ]
    for ty, body in bodies:
        put("distrib_cluster_msg", bytes([ty]) + body)


def store(put):
    """Record plaintexts that belong under the keys the store_record target uses."""
    spis = '{"initiator":72623859790382856,"responder":1230066625199609624}'
    ike = ('{"schema":1,"peer":"rw","spis":' + spis + ',"initiator":false,'
           '"local":"192.0.2.1:4500","remote":"198.51.100.9:4500","nat_local":false,'
           '"nat_remote":true,"local_id":{"id_type":2,"data":"67772e6578616d706c65"},'
           '"remote_id":{"id_type":3,"data":"636c69656e74406578616d706c65"},'
           '"auth_method":2,"proposal":{"encr":20,"encr_bits":256,"integ":null,"prf":6,'
           '"dh":20},"established_unix_ms":1700000000000}')
    ts = '{"protocol":6,"start_port":443,"end_port":443,"start":"10.100.0.10","end":"10.100.0.10"}'
    child = ('{"schema":1,"ike":' + spis + ',"peer":"rw","child":"web",'
             '"spis":{"spi_in":3235774465,"spi_out":3405643778},"protocol":50,'
             '"proposal":{"encr":20,"encr_bits":256,"integ":null,"dh":null},"esn":true,'
             '"mode":"Tunnel","ts_local":[' + ts + '],"ts_remote":[{"protocol":0,'
             '"start_port":0,"end_port":65535,"start":"198.51.100.9","end":"198.51.100.9"}],'
             '"lifetimes":{"soft":{"bytes":null,"packets":null,"seconds":3600},'
             '"hard":{"bytes":null,"packets":null,"seconds":3960}},'
             '"udp_encap":{"local_port":4500,"remote_port":4500},"dvipas":["10.100.0.10"],'
             '"replaces":null,"established_unix_ms":1700000000000}')
    put("store_record", b"\x00" + ike.encode())
    put("store_record", b"\x01" + child.encode())
    put("store_record", b"\x00" + ike.replace('"schema":1', '"schema":2').encode())
    put("store_record", b"\x02" + b"\x01\x00\x01\x00\x00\x00\x01" + bytes(range(40)))


def files(put):
    for p in sorted(REPO.glob("policy/*.toml")) + sorted(REPO.glob("crates/policy/tests/bad/*.toml")):
        put("policy_parse", p.read_bytes())
    for p in sorted(REPO.glob("keys/test/x509*/*.pem")):
        pem = p.read_bytes()
        put("pki_cert", b"\x04" + pem)
        b64 = b"".join(l for l in pem.splitlines() if l and not l.startswith(b"-----"))
        put("pki_cert", b"\x00" + base64.b64decode(b64))
    for p in sorted(REPO.glob("keys/test/private/*.pem"))[:3]:
        put("pki_cert", b"\x03" + p.read_bytes())
    put("pki_cert", b"\x02" + b"\x02\0\0\0" + b"gw.plexgate.test")   # ID_FQDN body


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
    structural(put)
    store(put)
    files(put)

    for target, blobs in sorted(out.items()):
        d = HERE / "seeds" / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):
            old.unlink()
        for b in blobs:
            (d / ("seed-" + hashlib.sha1(b).hexdigest()[:16])).write_bytes(b)
        print(f"{target}: {len(blobs)} seeds in {d.relative_to(REPO)}")


if __name__ == "__main__":
    main()
