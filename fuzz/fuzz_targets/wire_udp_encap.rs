//! Fuzz the RFC 3948 classifier of UDP/4500 payloads: never panics; ESP has a
//! non-zero SPI and a full header; IKE is what follows the non-ESP marker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_wire::udp_encap::{classify, UdpEncap, NON_ESP_MARKER};

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        Ok(UdpEncap::Esp(e)) => {
            assert!(e.len() >= 8);
            assert_ne!(e[..4], NON_ESP_MARKER);
        }
        Ok(UdpEncap::Ike(m)) => assert_eq!(m.len() + 4, data.len()),
        Ok(UdpEncap::Keepalive) => assert_eq!(data, [0xff]),
        Err(_) => {}
    }
});
