//! Fuzz `SecurityAssociation::open_in_place` with a fixed inbound SA per
//! transform: arbitrary bytes (with the SA's SPI forced in half the cases)
//! never panic and are never accepted (forging an ICV is out of reach).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexgate_ipsec::{Direction, EspTransform, Lifetime, Mode, SaParams, SecurityAssociation};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let t = EspTransform::ALL[usize::from(sel) % EspTransform::ALL.len()];
    let params = SaParams {
        spi: 0x0102_0304,
        direction: Direction::Inbound,
        transform: t,
        enc_key: vec![7; t.enc_key_len()],
        integ_key: vec![9; t.integ_key_len()],
        esn: sel & 0x80 != 0,
        mode: Mode::Tunnel,
        replay_window: 128,
        lifetime: Lifetime::default(),
        local_ts: vec![],
        remote_ts: vec![],
        local_addr: "192.0.2.1".parse().unwrap(),
        remote_addr: "192.0.2.2".parse().unwrap(),
        encap: None,
        initial_seq: 0,
        peer: String::new(),
        child: String::new(),
    };
    let mut sa = SecurityAssociation::new(params, Instant::now()).unwrap();
    let mut buf = rest.to_vec();
    if sel & 0x40 != 0 && buf.len() >= 4 {
        buf[..4].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    }
    assert!(sa.open_in_place(Instant::now(), &mut buf).is_err());
});
