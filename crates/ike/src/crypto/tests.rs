//! Crypto tests: DH agreement, prf+ against RFC 4231, SK round trips.

use num_bigint::BigUint;

use super::dh::modp_2048;
use super::*;
use crate::message::Header;

#[test]
fn modp_2048_prime_passes_fermat() {
    // Catches any typo in the RFC 3526 constant: 2^(p-1) = 1 mod p for a prime.
    let p = modp_2048();
    assert_eq!(p.bits(), 2048);
    let e = &p - 1u8;
    assert_eq!(BigUint::from(2u8).modpow(&e, &p), BigUint::from(1u8));
    assert_eq!(BigUint::from(3u8).modpow(&e, &p), BigUint::from(1u8));
}

#[test]
fn dh_groups_agree() {
    let mut rng = SeededRng::new(1);
    for g in [14u16, 19, 20, 31] {
        let (a, pa) = dh_generate(g, &mut rng).unwrap();
        let (b, pb) = dh_generate(g, &mut rng).unwrap();
        let s1 = dh_agree(a, &pb).unwrap();
        let s2 = dh_agree(b, &pa).unwrap();
        assert_eq!(s1, s2, "group {g}");
    }
    let (a, _) = dh_generate(19, &mut rng).unwrap();
    assert_eq!(dh_agree(a, &[1, 2, 3]), Err(CryptoError::BadPublic(19)));
}

#[test]
fn prf_plus_matches_rfc4231_hmac_for_first_block() {
    // RFC 4231 test case 2: HMAC-SHA-256(key="Jefe", "what do ya want for nothing?")
    let prf = Prf::from_id(5).unwrap();
    let out = prf.prf(b"Jefe", &[b"what do ya want for nothing?"]);
    assert_eq!(
        hex::encode(out),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // prf+ T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02)
    let k = b"key";
    let t = prf.prf_plus(k, &[b"seed"], 40);
    let t1 = prf.prf(k, &[b"seed", &[1]]);
    let t2 = prf.prf(k, &[&t1, b"seed", &[2]]);
    assert_eq!(&t[..32], &t1[..]);
    assert_eq!(&t[32..], &t2[..8]);
}

#[test]
fn seal_open_round_trip_all_suites() {
    let mut rng = SeededRng::new(7);
    let header = Header {
        spi_i: 1,
        spi_r: 2,
        next_payload: 0,
        version: 0x20,
        exchange: 35,
        flags: 8,
        message_id: 1,
        length: 0,
    };
    for (encr, bits, integ) in [
        (20u16, 128u16, None),
        (20, 256, None),
        (12, 128, Some(12u16)),
        (12, 256, Some(13)),
        (12, 128, Some(14)),
    ] {
        let suite = IkeSuite {
            encr,
            encr_bits: bits,
            integ,
            prf: Prf::from_id(5).unwrap(),
            dh: 31,
        };
        let ke = vec![0x42; suite.encr_key_len()];
        let ka = vec![0x24; suite.integ_key_len()];
        let c = SkCipher {
            suite: &suite,
            key_e: &ke,
            key_a: &ka,
        };
        for len in [0usize, 1, 15, 16, 17, 100] {
            let inner = vec![0xab; len];
            let msg = c.seal(&header, 41, &inner, &mut rng).unwrap();
            let m = crate::message::Message::parse(&msg).unwrap();
            let body_len = match &m.payloads[0] {
                crate::message::Payload::Sk {
                    body,
                    inner_first: 41,
                } => body.len(),
                p => panic!("{p:?}"),
            };
            assert_eq!(c.open(&msg, body_len).unwrap(), inner);
            let mut bad = msg.clone();
            let n = bad.len();
            bad[n - 1] ^= 1;
            assert_eq!(c.open(&bad, body_len), Err(CryptoError::Integrity));
        }
    }
}
