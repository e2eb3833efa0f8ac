//! Fuzz the GRE view: `GrePacket::new_checked`, the accessors and
//! `GreRepr::parse` never panic, and a parsed header re-emits to a packet that
//! parses to the same repr.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_wire::gre::{GrePacket, GreRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = GrePacket::new_checked(data) {
        let _ = (p.key(), p.seq(), p.checksum(), p.verify_checksum());
        if let Ok(r) = GreRepr::parse(&p) {
            let mut out = data.to_vec();
            let n = r.emit(&mut out, p.payload().len()).expect("same length");
            let q = GrePacket::new_checked(&out[..n]).expect("emitted header is valid");
            assert_eq!(GreRepr::parse(&q).expect("checksum is right"), r);
        }
    }
});
