//! Fuzz the ARP and Ethernet views: `EthernetFrame::new_checked`,
//! `ArpPacket::new_checked`, their accessors and `ArpFrameRepr::parse` never panic,
//! and a parsed frame re-emits to the same 42 leading bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_wire::arp::{ArpFrameRepr, ArpPacket, EthernetFrame, FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (e.dst(), e.src(), e.ethertype());
        if let Ok(p) = ArpPacket::new_checked(e.payload()) {
            let _ = (p.hardware_type(), p.protocol_type(), p.operation());
            let _ = (p.sender_hardware_addr(), p.sender_protocol_addr());
            let _ = (p.target_hardware_addr(), p.target_protocol_addr());
        }
    }
    if let Ok(r) = ArpFrameRepr::parse(data) {
        let out = r.to_bytes();
        assert_eq!(&out[..], &data[..FRAME_LEN]);
        assert_eq!(ArpFrameRepr::parse(&out).expect("emitted frame parses"), r);
    }
});
