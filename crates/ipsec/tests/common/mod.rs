//! Test helpers: a tiny pcap reader and writer (classic pcap, microsecond
//! timestamps) and packet builders. Test-only; not part of the crate.
#![allow(dead_code)]

use plexgate_wire::udp_encap::{classify, UdpEncap};

/// Link types used here.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IP (IPv4 or IPv6 by the version nibble).
pub const LINKTYPE_RAW: u32 = 101;

/// Frames of a classic pcap file: (link type, frames).
pub fn read_pcap(bytes: &[u8]) -> (u32, Vec<Vec<u8>>) {
    assert!(bytes.len() >= 24, "pcap too short");
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => panic!("not a classic pcap file (magic {m:#x})"),
    };
    let u32_at = |o: usize| {
        let b: [u8; 4] = bytes[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link = u32_at(20);
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let incl = u32_at(off + 8) as usize;
        let start = off + 16;
        frames.push(bytes[start..start + incl].to_vec());
        off = start + incl;
    }
    (link, frames)
}

/// The UDP/4500 ESP payloads of a pcap (Ethernet or raw IPv4), in order,
/// each with (source, destination) IPv4 addresses.
pub fn esp_in_udp(bytes: &[u8]) -> Vec<([u8; 4], [u8; 4], Vec<u8>)> {
    let (link, frames) = read_pcap(bytes);
    let mut out = Vec::new();
    for f in frames {
        let ip = match link {
            LINKTYPE_ETHERNET if f.len() > 14 && f[12..14] == [0x08, 0x00] => &f[14..],
            LINKTYPE_RAW => &f[..],
            _ => continue,
        };
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let ihl = usize::from(ip[0] & 15) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let udp = &ip[ihl..total];
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        if dport != 4500 {
            continue;
        }
        if let Ok(UdpEncap::Esp(esp)) = classify(&udp[8..]) {
            let src = ip[12..16].try_into().unwrap();
            let dst = ip[16..20].try_into().unwrap();
            out.push((src, dst, esp.to_vec()));
        }
    }
    out
}

/// An outer IPv4 + UDP (4500 -> 4500, checksum 0) header around `esp`.
pub fn ipv4_udp4500(src: [u8; 4], dst: [u8; 4], esp: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + esp.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = plexgate_wire::ones_complement_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&4500u16.to_be_bytes());
    p.extend_from_slice(&4500u16.to_be_bytes());
    p.extend_from_slice(&((8 + esp.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(esp);
    p
}

/// A classic pcap file with raw-IP frames.
pub fn write_pcap_raw(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    for (i, fr) in frames.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        f.extend_from_slice(fr);
    }
    f
}

/// An IPv4 UDP packet `src:sport -> dst:dport` carrying `payload`.
pub fn inner_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}
