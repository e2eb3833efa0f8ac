//! Fuzz the store's sealed recovery records (`plexgate-store`): arbitrary bytes
//! read under a record key are refused without panicking (AEAD: forging is out
//! of reach); and arbitrary plaintexts sealed with the site key — what a buggy
//! or other-version gateway could have written — go through the JSON decoders,
//! the schema check and the belongs-under-this-key check without panicking. A
//! record that opens seals again and opens to the same record.
//!   cargo fuzz run store_record
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use plexgate_store::{IkeSpis, Keyring, Keys, RecordBook, StoreKey, SCHEMA_VERSION};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let key = StoreKey::from_bytes(&[7u8; 32]).expect("32 raw bytes are a key");
    let ring = Arc::new(Keyring::single("fuzz", key));
    let book = RecordBook::new(Keys::new("/plexgate/fuzz/", ring.clone()));
    let spis = IkeSpis {
        initiator: 0x0102_0304_0506_0708,
        responder: 0x1112_1314_1516_1718,
    };
    let store_key = match sel % 3 {
        0 => book.keys().ike(spis),
        1 => book.keys().child(spis, 0xc0de_0001),
        _ => format!("/plexgate/fuzz/{}", String::from_utf8_lossy(&rest[..rest.len().min(16)])),
    };
    // Raw bytes as if read from the store: never accepted.
    assert!(book.open(&store_key, rest).is_err(), "unsealed bytes opened");
    // Authenticated plaintext: decoded, checked, never a panic.
    let Ok(sealed) = ring.seal(&store_key, SCHEMA_VERSION, rest) else {
        return;
    };
    if let Ok(r) = book.open(&store_key, &sealed) {
        let (k, v) = book.seal(&r).expect("an opened record seals");
        assert_eq!(k, store_key, "an opened record belongs under its key");
        assert_eq!(book.open(&k, &v).expect("a sealed record opens"), r);
    }
});
