//! The Internet checksum (RFC 1071), used by GRE (RFC 2784 §2.5) and IPv4.

/// Ones'-complement of the ones'-complement sum of `data` taken as big-endian
/// 16-bit words (an odd last byte is padded with zero), as RFC 1071 defines it.
///
/// Computing it over data that contains a correct checksum yields 0.
pub fn ones_complement_checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Adding 32-bit halves keeps the carries; folded below.
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum += w >> 32;
        sum += w & 0xffff_ffff;
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d).
        assert_eq!(
            ones_complement_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn ipv4_header_from_capture() {
        // IPv4 header of frame 5 of /work/shared/captures/gcm128-x25519/exchange.pcap
        // (10.250.0.1 -> 10.250.0.2, UDP); with its checksum in place the sum is 0.
        let h = hex::decode("45000094378c40004011ecd60afa00010afa0002").unwrap();
        assert_eq!(ones_complement_checksum(&h), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(
            ones_complement_checksum(&[0x12, 0x34, 0x56]),
            ones_complement_checksum(&[0x12, 0x34, 0x56, 0x00])
        );
    }
}
