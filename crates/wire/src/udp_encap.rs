//! UDP encapsulation of ESP for NAT traversal (RFC 3948): what a datagram on
//! UDP port 4500 carries.
//!
//! - a single byte 0xFF is a NAT-keepalive (RFC 3948 §2.3);
//! - four zero bytes (the non-ESP marker) are followed by an IKE message (§2.2);
//! - anything else is an ESP packet whose first four bytes are a non-zero SPI.

use crate::{need, Result, WireError};

/// The non-ESP marker that precedes IKE messages on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0, 0, 0, 0];

/// The NAT-keepalive payload (RFC 3948 §2.3).
pub const KEEPALIVE: [u8; 1] = [0xff];

/// The IANA UDP port for IKE and UDP-encapsulated ESP (RFC 3948 §2).
pub const NAT_T_PORT: u16 = 4500;

/// What a UDP/4500 payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpEncap<'a> {
    /// A NAT-keepalive: drop it (only refreshes NAT state).
    Keepalive,
    /// An IKE message; the slice starts after the non-ESP marker.
    Ike(&'a [u8]),
    /// An ESP packet starting with its (non-zero) SPI: the whole payload.
    Esp(&'a [u8]),
}

/// The kind of payload, without borrowing it (for in-place processing: ESP is
/// the whole payload, IKE starts at [`NON_ESP_MARKER`]`.len()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpEncapKind {
    /// A NAT-keepalive.
    Keepalive,
    /// IKE after the 4-byte non-ESP marker.
    Ike,
    /// ESP, the whole payload.
    Esp,
}

/// Classifies a UDP/4500 payload without copying.
///
/// ESP must hold at least the 8-byte ESP header; IKE must hold at least one
/// byte after the marker.
pub fn classify(payload: &[u8]) -> Result<UdpEncap<'_>> {
    Ok(match classify_kind(payload)? {
        UdpEncapKind::Keepalive => UdpEncap::Keepalive,
        UdpEncapKind::Ike => UdpEncap::Ike(&payload[NON_ESP_MARKER.len()..]),
        UdpEncapKind::Esp => UdpEncap::Esp(payload),
    })
}

/// Like [`classify`] but returns only the kind.
pub fn classify_kind(payload: &[u8]) -> Result<UdpEncapKind> {
    //= https://www.rfc-editor.org/rfc/rfc3948#section-2.3
    //# The sender SHOULD use a one-octet long payload with the value 0xFF.
    //# The receiver SHOULD ignore a received NAT-keepalive packet.
    if payload == KEEPALIVE {
        return Ok(UdpEncapKind::Keepalive);
    }
    need(payload.len(), NON_ESP_MARKER.len())?;
    //= https://www.rfc-editor.org/rfc/rfc3948#section-2.2
    //# The SPI field in the ESP header MUST NOT be a zero value.
    if payload[..4] == NON_ESP_MARKER {
        need(payload.len(), NON_ESP_MARKER.len() + 1)?;
        return Ok(UdpEncapKind::Ike);
    }
    need(payload.len(), crate::esp::HEADER_LEN)?;
    Ok(UdpEncapKind::Esp)
}

/// Writes the non-ESP marker into `buf[..4]` (so that the caller can build the
/// IKE message at `buf[4..]`) and returns the marker length.
pub fn emit_non_esp_marker(buf: &mut [u8]) -> Result<usize> {
    let have = buf.len();
    let out = buf
        .get_mut(..NON_ESP_MARKER.len())
        .ok_or(WireError::BufferTooSmall { needed: 4, have })?;
    out.copy_from_slice(&NON_ESP_MARKER);
    Ok(NON_ESP_MARKER.len())
}

/// Copies `ike` after a non-ESP marker into `buf`; returns the datagram length.
pub fn prepend_non_esp_marker(ike: &[u8], buf: &mut [u8]) -> Result<usize> {
    let total = NON_ESP_MARKER.len() + ike.len();
    let have = buf.len();
    let out = buf.get_mut(..total).ok_or(WireError::BufferTooSmall {
        needed: total,
        have,
    })?;
    out[..4].copy_from_slice(&NON_ESP_MARKER);
    out[4..].copy_from_slice(ike);
    Ok(total)
}

/// Writes a NAT-keepalive into `buf`; returns its length (1).
pub fn emit_keepalive(buf: &mut [u8]) -> Result<usize> {
    let out = buf
        .first_mut()
        .ok_or(WireError::BufferTooSmall { needed: 1, have: 0 })?;
    *out = KEEPALIVE[0];
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP payload of frame 7 of `/work/shared/captures/gcm128-x25519/exchange.pcap`:
    /// an IKEv2 INFORMATIONAL request behind the non-ESP marker (strongSwan 5.9.8).
    const IKE_ON_4500: &str = "000000003e2a488b79d18798240908674b5188f62e202500000000000000005029\
        000034b4c894dba722cfe1b1fe23c16dd7a100d9fde54a4d981be9fbbeaffdb3983c26329c147849172c3c\
        6c2cbdaf0a1f26a1";
    /// First 16 bytes of frame 5 of the same capture: ESP, SPI 0x634a93ee, seq 1.
    const ESP_ON_4500: &str = "634a93ee00000001607747c91f6b88f9";

    #[test]
    fn classify_captured() {
        let ike = hex::decode(IKE_ON_4500).unwrap();
        match classify(&ike).unwrap() {
            UdpEncap::Ike(m) => {
                assert_eq!(m.len(), ike.len() - 4);
                // IKE SPIi of the exchange, then next payload 0x2e (SK), version 0x20.
                assert_eq!(&m[..8], &hex::decode("3e2a488b79d18798").unwrap()[..]);
                assert_eq!(m[16], 0x2e);
                assert_eq!(m[17], 0x20);
            }
            other => panic!("expected IKE, got {other:?}"),
        }
        let esp = hex::decode(ESP_ON_4500).unwrap();
        assert_eq!(classify(&esp).unwrap(), UdpEncap::Esp(&esp[..]));
        assert_eq!(classify(&[0xff]).unwrap(), UdpEncap::Keepalive);
    }

    #[test]
    fn truncated() {
        assert!(matches!(classify(&[]), Err(WireError::Truncated { .. })));
        assert!(matches!(
            classify(&[0, 0, 0]),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            classify(&[0, 0, 0, 0]),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            classify(&[1, 2, 3, 4, 5, 6, 7]),
            Err(WireError::Truncated { needed: 8, .. })
        ));
        // 0xff followed by more bytes is not a keepalive: ESP with SPI 0xff......
        assert!(matches!(
            classify(&[0xff, 0]),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn emit_round_trip() {
        let ike = hex::decode(IKE_ON_4500).unwrap();
        let mut buf = vec![0xaa; ike.len() + 3];
        let n = prepend_non_esp_marker(&ike[4..], &mut buf).unwrap();
        assert_eq!(&buf[..n], &ike[..]);
        let mut k = [0u8; 4];
        assert_eq!(emit_keepalive(&mut k).unwrap(), 1);
        assert_eq!(classify(&k[..1]).unwrap(), UdpEncap::Keepalive);
        assert_eq!(emit_non_esp_marker(&mut k).unwrap(), 4);
        assert_eq!(k, NON_ESP_MARKER);
        assert!(emit_keepalive(&mut []).is_err());
        assert!(prepend_non_esp_marker(&[1, 2], &mut [0u8; 5]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..32)) {
            match classify(&data) {
                Ok(UdpEncap::Esp(e)) => {
                    proptest::prop_assert!(e.len() >= 8);
                    proptest::prop_assert!(e[..4] != NON_ESP_MARKER);
                }
                Ok(UdpEncap::Ike(m)) => proptest::prop_assert_eq!(m.len() + 4, data.len()),
                Ok(UdpEncap::Keepalive) => proptest::prop_assert_eq!(&data[..], &[0xff][..]),
                Err(_) => {}
            }
        }
    }
}
