//! TCP MSS clamping on the target (seed 001: "the MTU size in the TCB of the
//! server protocol stack is adjusted by a representative IPsec header size").
//!
//! A SYN or SYN-ACK that passes through the target gets its MSS option lowered
//! so that a full segment, once the gateway adds ESP-in-UDP (and the GRE hop
//! adds its header), still fits a 1500-byte path without fragmentation. The TCP
//! checksum is patched incrementally (RFC 1624), never recomputed.

use crate::flow::{PacketInfo, TcpFlags, IPPROTO_TCP};

/// Representative overhead: outer IPv4 20 + UDP (NAT-T) 8 + ESP header 8 +
/// IV 8 + padding up to 3 + pad length and next header 2 + ICV 16 + GRE with
/// key 8 = 73 bytes. Conservative: the GRE hop and the ESP hop are different
/// links, but one number keeps every path safe.
pub const REPRESENTATIVE_OVERHEAD: u16 = 73;

/// Clamping parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MssClamp {
    /// MTU of the client path (1500 on Ethernet).
    pub path_mtu: u16,
    /// Bytes the tunnel adds ([`REPRESENTATIVE_OVERHEAD`]).
    pub overhead: u16,
}

impl Default for MssClamp {
    fn default() -> Self {
        MssClamp {
            path_mtu: 1500,
            overhead: REPRESENTATIVE_OVERHEAD,
        }
    }
}

impl MssClamp {
    /// The largest MSS allowed for an inner IPv4 (`v6 = false`) or IPv6 packet:
    /// 1387 and 1367 with the defaults.
    pub fn max_mss(&self, v6: bool) -> u16 {
        let ip = if v6 { 40 } else { 20 };
        self.path_mtu.saturating_sub(self.overhead + ip + 20)
    }

    /// Lower the MSS option of a SYN or SYN-ACK in `packet` (already parsed into
    /// `info`) to [`MssClamp::max_mss`]. Returns true if the packet changed.
    /// Packets that are not TCP SYNs, have no MSS option or a smaller one are
    /// left alone; malformed options end the scan without a change.
    pub fn clamp(&self, packet: &mut [u8], info: &PacketInfo) -> bool {
        if info.protocol != IPPROTO_TCP || !info.tcp_flags().has(TcpFlags::SYN) {
            return false;
        }
        let max = self.max_mss(info.src.is_ipv6());
        let t = info.l4_offset;
        let Some(doff) = packet.get(t + 12).map(|b| usize::from(b >> 4) * 4) else {
            return false;
        };
        let Some(at) = find_mss(packet.get(t + 20..t + doff).unwrap_or(&[])) else {
            return false;
        };
        let at = t + 20 + at; // offset of the 2-byte MSS value
        let Some(old) = packet
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
        else {
            return false;
        };
        if old <= max {
            return false;
        }
        write_u16_fix_checksum(packet, t, at, max);
        true
    }
}

/// Offset (within the options) of the MSS option's value.
fn find_mss(opts: &[u8]) -> Option<usize> {
    let mut i = 0;
    //= https://www.rfc-editor.org/rfc/rfc9293#section-3.1
    //# Options may occupy space at the end of the TCP header and are a
    //# multiple of 8 bits in length.
    while let Some(&kind) = opts.get(i) {
        match kind {
            0 => return None,
            1 => i += 1,
            _ => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 {
                    return None;
                }
                if kind == 2 {
                    return (len == 4 && i + 4 <= opts.len()).then_some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

//= https://www.rfc-editor.org/rfc/rfc1624#section-3
//# HC' = ~(~HC + ~m + m')
fn csum_update(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Write `value` at `at` and patch the TCP checksum (at `tcp + 16`); `at` may
/// be at an odd distance from the TCP header, then two checksum words change.
fn write_u16_fix_checksum(p: &mut [u8], tcp: usize, at: usize, value: u16) {
    let word_start = tcp + ((at - tcp) & !1);
    let word_end = (tcp + ((at + 2 - tcp + 1) & !1)).min(p.len());
    let words = |p: &[u8]| -> [u16; 2] {
        let mut w = [0u16; 2];
        for (i, c) in p[word_start..word_end].chunks(2).enumerate().take(2) {
            w[i] = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        }
        w
    };
    let before = words(p);
    p[at..at + 2].copy_from_slice(&value.to_be_bytes());
    let after = words(p);
    let mut hc = u16::from_be_bytes([p[tcp + 16], p[tcp + 17]]);
    for (o, n) in before.iter().zip(after.iter()) {
        if o != n {
            hc = csum_update(hc, *o, *n);
        }
    }
    p[tcp + 16..tcp + 18].copy_from_slice(&hc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::parse;
    use etherparse::{PacketBuilder, TcpOptionElement as O};

    fn full_checksum(p: &[u8]) -> u16 {
        let s = etherparse::SlicedPacket::from_ip(p).unwrap();
        let payload = match &s.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => t,
            _ => panic!("not tcp"),
        };
        let hdr = payload.to_header();
        match &s.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => hdr
                .calc_checksum_ipv4(&ip.header().to_header(), payload.payload())
                .unwrap(),
            Some(etherparse::NetSlice::Ipv6(ip)) => hdr
                .calc_checksum_ipv6(&ip.header().to_header(), payload.payload())
                .unwrap(),
            _ => panic!("not ip"),
        }
    }

    fn stored_checksum(p: &[u8], t: usize) -> u16 {
        u16::from_be_bytes([p[t + 16], p[t + 17]])
    }

    fn build(v6: bool, ack: bool, opts: &[O]) -> Vec<u8> {
        let b = if v6 {
            PacketBuilder::ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
        } else {
            PacketBuilder::ipv4([192, 0, 2, 10], [198, 51, 100, 7], 64)
        };
        let mut tcp = b.tcp(40000, 443, 123456, 65535).syn();
        if ack {
            tcp = tcp.ack(999);
        }
        let tcp = tcp.options(opts).unwrap();
        let mut v = Vec::new();
        tcp.write(&mut v, &[]).unwrap();
        v
    }

    fn mss_of(p: &[u8]) -> Option<u16> {
        let info = parse(p).unwrap();
        let t = info.l4_offset;
        let doff = usize::from(p[t + 12] >> 4) * 4;
        let at = t + 20 + find_mss(&p[t + 20..t + doff])?;
        Some(u16::from_be_bytes([p[at], p[at + 1]]))
    }

    #[test]
    fn clamps_ipv4_syn_and_checksum_matches_full_recompute() {
        let mut p = build(
            false,
            false,
            &[
                O::MaximumSegmentSize(1460),
                O::SelectiveAcknowledgementPermitted,
            ],
        );
        let info = parse(&p).unwrap();
        assert_eq!(stored_checksum(&p, 20), full_checksum(&p));
        assert!(MssClamp::default().clamp(&mut p, &info));
        assert_eq!(mss_of(&p), Some(1387));
        assert_eq!(stored_checksum(&p, 20), full_checksum(&p));
        // Second pass: already small enough.
        assert!(!MssClamp::default().clamp(&mut p, &info));
    }

    #[test]
    fn clamps_ipv6_syn_ack_at_odd_offset() {
        // A NOP first puts the MSS value at an odd offset from the TCP header.
        let mut p = build(
            true,
            true,
            &[
                O::Noop,
                O::MaximumSegmentSize(1440),
                O::Noop,
                O::Noop,
                O::Noop,
            ],
        );
        let info = parse(&p).unwrap();
        assert!(MssClamp::default().clamp(&mut p, &info));
        assert_eq!(mss_of(&p), Some(1367));
        assert_eq!(stored_checksum(&p, 40), full_checksum(&p));
    }

    #[test]
    fn leaves_small_or_missing_mss_and_non_syn() {
        let mut p = build(false, false, &[O::MaximumSegmentSize(1200)]);
        let info = parse(&p).unwrap();
        assert!(!MssClamp::default().clamp(&mut p, &info));
        let mut p = build(false, false, &[O::WindowScale(7)]);
        let info = parse(&p).unwrap();
        assert!(!MssClamp::default().clamp(&mut p, &info));
        let mut p = build(false, false, &[O::MaximumSegmentSize(1460)]);
        p[33] = TcpFlags::ACK; // not a SYN any more
        let info = parse(&p).unwrap();
        assert!(!MssClamp::default().clamp(&mut p, &info));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285 gives 0x0000
        // under eqn. 3 (eqn. 2 of RFC 1141 would give 0xFFFF).
        assert_eq!(csum_update(0xDD2F, 0x5555, 0x3285), 0x0000);
    }
}
