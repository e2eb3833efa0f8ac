//! Known answers and round trips for proposal strings.

use super::*;

/// Known answer: the proposals of the strongSwan 5.9.8 captures in
/// `crates/ike/testdata/captures` (swanctl.conf strings) and the transforms charon
/// negotiated according to the README table of that folder.
#[test]
fn strongswan_capture_proposals() {
    // gcm128-x25519: "aes128-sha256-x25519" →
    // AES_CBC_128 / HMAC_SHA2_256_128 / PRF_HMAC_SHA2_256 / CURVE_25519
    let (p, w) = parse_ike("aes128-sha256-x25519").unwrap();
    assert!(w.is_empty());
    assert_eq!(p.encryption, vec![Encr::AesCbc { key_bits: 128 }]);
    assert_eq!(p.encryption[0].transform_id(), 12);
    assert_eq!(p.integrity[0].transform_id(), 12);
    assert_eq!(p.prf, vec![Prf::HmacSha256]);
    assert_eq!(p.prf[0].transform_id(), 5);
    assert_eq!(p.dh[0].transform_id(), 31);
    // ESP "aes128gcm16" → AES_GCM_16 128, no ESN.
    let (e, _) = parse_esp("aes128gcm16").unwrap();
    assert_eq!(
        e.encryption,
        vec![Encr::AesGcm {
            key_bits: 128,
            icv_bytes: 16
        }]
    );
    assert_eq!(e.encryption[0].transform_id(), 20);
    assert_eq!(e.esn, vec![Esn::No]);
    // gcm256-p384: "aes256gcm16-prfsha384-ecp384" →
    // AES_GCM_16_256 / PRF_HMAC_SHA2_384 / ECP_384
    let (p, _) = parse_ike("aes256gcm16-prfsha384-ecp384").unwrap();
    assert_eq!(p.encryption[0].key_bits(), 256);
    assert!(p.integrity.is_empty());
    assert_eq!(p.prf[0].transform_id(), 6);
    assert_eq!(p.dh[0].transform_id(), 20);
    // ESP "aes256-sha256" → AES_CBC_256 / HMAC_SHA2_256_128
    let (e, _) = parse_esp("aes256-sha256").unwrap();
    assert_eq!(e.encryption, vec![Encr::AesCbc { key_bits: 256 }]);
    assert_eq!(e.integrity, vec![Integ::HmacSha256_128]);
}

#[test]
fn display_round_trips() {
    for s in [
        "aes256gcm16-prfsha384-ecp384",
        "aes128-sha256-prfsha256-x25519",
        "aes128-aes256-sha256-sha512-prfsha256-modp2048-ecp256",
        "chacha20poly1305-prfsha512-x448",
    ] {
        let (p, _) = parse_ike(s).unwrap();
        assert_eq!(p.to_string(), s);
    }
    // The derived PRF is written out.
    assert_eq!(
        parse_ike("aes128-sha256-x25519").unwrap().0.to_string(),
        "aes128-sha256-prfsha256-x25519"
    );
    for s in [
        "aes128gcm16",
        "aes256gcm16-esn",
        "aes256-sha256-ecp384",
        "aes256gcm12-esn-noesn",
    ] {
        let (p, _) = parse_esp(s).unwrap();
        assert_eq!(p.to_string(), s);
    }
}

#[test]
fn esp_variants() {
    let (e, _) = parse_esp("aes256gcm16-esn").unwrap();
    assert_eq!(e.esn, vec![Esn::Yes]);
    let (e, _) = parse_esp("chacha20poly1305").unwrap();
    assert_eq!(e.encryption[0].transform_id(), 28);
    let (e, _) = parse_esp("aes256-sha384-ecp384").unwrap();
    assert_eq!(e.pfs, vec![DhGroup::Ecp384]);
}

#[test]
fn rejections_explain() {
    let e = parse_ike("aes257-sha256-x25519").unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown algorithm `aes257` in IKE proposal `aes257-sha256-x25519`; did you mean `aes256`?"
    );
    let e = parse_ike("3des-sha256-x25519").unwrap_err().to_string();
    assert!(e.ends_with("(it is weak and not supported)"), "{e}");
    let e = parse_ike("aes256gcm16-ecp384").unwrap_err().to_string();
    assert!(e.contains("names no PRF"), "{e}");
    let e = parse_ike("aes256-sha256").unwrap_err().to_string();
    assert!(e.contains("no key exchange method"), "{e}");
    let e = parse_esp("aes256gcm16-sha256").unwrap_err().to_string();
    assert!(e.contains("AEAD cipher with an integrity"), "{e}");
    let e = parse_esp("aes256").unwrap_err().to_string();
    assert!(e.contains("no integrity algorithm"), "{e}");
    let e = parse_esp("aes256-aes128gcm16-sha256")
        .unwrap_err()
        .to_string();
    assert!(e.contains("mixes AEAD"), "{e}");
    assert!(parse_esp("aes128-sha256-prfsha256").is_err());
    assert!(parse_ike("aes128-sha256-x25519-esn").is_err());
    assert!(parse_ike("").is_err());
    let (_, w) = parse_ike("aes128-sha1-modp1024").unwrap();
    assert_eq!(w.len(), 2);
}
