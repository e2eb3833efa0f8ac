//! Fuzz the IKEv2 message parser: any bytes must parse or fail with a typed error,
//! never panic; whatever parses must re-emit to bytes that parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_ike::message::{parse_payloads, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let again = Message::parse(&m.emit());
        assert!(again.is_ok());
    }
    if let Some((&first, rest)) = data.split_first() {
        let _ = parse_payloads(first, rest);
    }
});
