use super::*;

fn key(b: u8) -> StoreKey {
    StoreKey::from_bytes(&[b; 32]).unwrap()
}

fn ring() -> Keyring {
    Keyring::single("site-a", key(7))
}

struct FailingRng;

impl RandomSource for FailingRng {
    fn fill(&self, _: &mut [u8]) -> Result<(), RngFailure> {
        Err(RngFailure)
    }
}

#[test]
fn sealed_values_open_under_their_key_only() {
    let r = ring();
    let s = r.seal("p/ike/x", 1, b"hello record").unwrap();
    assert_eq!(s.len(), HEADER_LEN + 12 + TAG_LEN);
    assert!(
        !s.windows(5).any(|w| w == b"hello"),
        "no plaintext in the sealed bytes"
    );
    let o = r.open("p/ike/x", &s).unwrap();
    assert_eq!(o.plaintext, b"hello record");
    assert_eq!((o.schema, o.key_id), (1, KeyId(1)));
    assert_eq!(
        r.open("p/ike/y", &s),
        Err(SealError::Forged),
        "moved to another key"
    );
    let other_site = Keyring::single("site-b", key(7));
    assert_eq!(
        other_site.open("p/ike/x", &s),
        Err(SealError::Forged),
        "copied from another site"
    );
    let other_key = Keyring::single("site-a", key(8));
    assert_eq!(
        other_key.open("p/ike/x", &s),
        Err(SealError::Forged),
        "another key under the same id"
    );
    let c = r.counters();
    assert_eq!((c.sealed, c.opened, c.refused_forged), (1, 1, 1));
}

#[test]
fn every_altered_byte_is_refused_and_counted() {
    let r = ring();
    let s = r.seal("k", 1, b"0123456789abcdef").unwrap();
    for i in 0..s.len() {
        let mut bad = s.clone();
        bad[i] ^= 0x01;
        let e = r.open("k", &bad).unwrap_err();
        match i {
            0 => assert_eq!(e, SealError::UnknownFormat(0)),
            3..=6 => assert!(matches!(e, SealError::UnknownKeyId(_)), "byte {i}: {e}"),
            _ => assert_eq!(e, SealError::Forged, "byte {i}"),
        }
    }
    for n in [0, 1, HEADER_LEN, HEADER_LEN + TAG_LEN - 1] {
        assert_eq!(r.open("k", &s[..n]), Err(SealError::Truncated(n)));
    }
    let c = r.counters();
    assert_eq!(c.refused(), s.len() as u64 + 4);
    assert_eq!(c.refused_unknown_key, 4);
    assert_eq!(c.refused_malformed, 5);
    assert_eq!(c.opened, 0);
}

#[test]
fn the_schema_version_is_authenticated() {
    let r = ring();
    let mut s = r.seal("k", 1, b"x").unwrap();
    s[2] = 2; // claim schema 2
    assert_eq!(r.open("k", &s), Err(SealError::Forged));
}

#[test]
fn rotation_reads_old_and_new_and_writes_new() {
    let old = Keyring::single("site-a", key(1));
    let sealed_old = old.seal("k", 1, b"old").unwrap();
    let ring = Keyring::new(
        "site-a",
        KeyId(2),
        vec![(KeyId(1), key(1)), (KeyId(2), key(2))],
    )
    .unwrap()
    .with_names_key(KeyId(1))
    .unwrap();
    assert_eq!(ring.open("k", &sealed_old).unwrap().plaintext, b"old");
    let new = ring.seal("k", 1, b"new").unwrap();
    assert_eq!(ring.open("k", &new).unwrap().key_id, KeyId(2));
    assert_eq!(old.open("k", &new), Err(SealError::UnknownKeyId(KeyId(2))));
    assert_eq!(
        ring.blind("gw", b"a"),
        old.blind("gw", b"a"),
        "names pinned to key 1 survive the switch of the write key"
    );
    let dropped = Keyring::new("site-a", KeyId(2), vec![(KeyId(2), key(2))]).unwrap();
    assert_eq!(
        dropped.open("k", &sealed_old),
        Err(SealError::UnknownKeyId(KeyId(1)))
    );
    assert!(Keyring::new("s", KeyId(3), vec![(KeyId(1), key(1))]).is_err());
    assert!(ring.with_names_key(KeyId(9)).is_err());
}

#[test]
fn a_failing_rng_is_an_error_not_a_zero_nonce() {
    let r = ring().with_random(Box::new(FailingRng));
    assert_eq!(r.seal("k", 1, b"x"), Err(SealError::Rng));
    assert_eq!(r.counters().rng_failures, 1);
    assert_eq!(r.counters().sealed, 0);
}

#[test]
fn nonces_differ_between_seals_of_the_same_value() {
    let r = ring();
    let a = r.seal("k", 1, b"same").unwrap();
    let b = r.seal("k", 1, b"same").unwrap();
    assert_ne!(a[7..HEADER_LEN], b[7..HEADER_LEN]);
    assert_ne!(a, b);
}

#[test]
fn key_files_hex_or_raw_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let hexkey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let k = StoreKey::from_bytes(format!("  {hexkey}\n").as_bytes()).unwrap();
    assert_eq!(k.to_hex(), hexkey);
    assert!(StoreKey::from_bytes(&[9u8; 32]).is_ok());
    assert!(StoreKey::from_bytes(b"short").is_err());
    assert!(StoreKey::from_bytes(&[b'z'; 64]).is_err());
    let dir = std::env::temp_dir().join(format!("plx-{}-sealkey", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("store.key");
    std::fs::write(&p, format!("{hexkey}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = StoreKey::read_file(&p).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(StoreKey::read_file(&p).unwrap().to_hex(), hexkey);
    assert!(StoreKey::read_file(&dir.join("absent")).is_err());
    let _ = std::fs::remove_dir_all(dir);
}
