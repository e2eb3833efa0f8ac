//! Fuzz the ESP header view: `EspPacket::new_checked` and `EspRepr` must never
//! panic, and a parsed header must emit back to the same 8 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_wire::esp::{EspPacket, EspRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = EspPacket::new_checked(data) {
        let repr = EspRepr::parse(&p).expect("checked packet parses");
        let mut out = [0u8; 8];
        repr.emit(&mut out).expect("8-byte buffer");
        assert_eq!(&out[..], &data[..8]);
        let _ = p.payload();
    }
});
