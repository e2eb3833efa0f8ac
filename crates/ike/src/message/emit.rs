//! Emitting payloads to bytes (RFC 7296 §3.2-§3.16): the generic payload header with
//! its Next Payload chain, and each payload body.

use std::net::IpAddr;

use super::{payload_type, protocol, ts_type, Payload, Proposal, TrafficSelector};

impl Payload {
    pub(super) fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(props) => {
                for (i, p) in props.iter().enumerate() {
                    emit_proposal(p, i + 1 == props.len(), out);
                }
            }
            Payload::Ke { group, data } => {
                out.extend_from_slice(&group.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Nonce(d) | Payload::Vendor(d) | Payload::Eap(d) => out.extend_from_slice(d),
            Payload::Unknown { data, .. } => out.extend_from_slice(data),
            Payload::IdI(id) | Payload::IdR(id) => out.extend_from_slice(&id.body()),
            Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
                out.push(*encoding);
                out.extend_from_slice(data);
            }
            Payload::Auth { method, data } => {
                out.extend_from_slice(&[*method, 0, 0, 0]);
                out.extend_from_slice(data);
            }
            Payload::Notify(n) => {
                out.push(n.protocol);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.kind.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => {
                out.push(d.protocol);
                let spi_size = if d.protocol == protocol::IKE { 0 } else { 4 };
                out.push(spi_size);
                let n = if spi_size == 0 {
                    0
                } else {
                    d.spis.len() as u16
                };
                out.extend_from_slice(&n.to_be_bytes());
                if spi_size == 4 {
                    for s in &d.spis {
                        out.extend_from_slice(&s.to_be_bytes());
                    }
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                out.extend_from_slice(&[ts.len() as u8, 0, 0, 0]);
                for t in ts {
                    emit_ts(t, out);
                }
            }
            Payload::Sk { body, .. } => out.extend_from_slice(body),
            Payload::Cp { cfg_type, attrs } => {
                out.extend_from_slice(&[*cfg_type, 0, 0, 0]);
                out.extend_from_slice(attrs);
            }
        }
    }
}
fn emit_proposal(p: &Proposal, last: bool, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[if last { 0 } else { 2 }, 0, 0, 0]);
    out.push(p.num);
    out.push(p.protocol);
    out.push(p.spi.len() as u8);
    out.push(p.transforms.len() as u8);
    out.extend_from_slice(&p.spi);
    for (i, t) in p.transforms.iter().enumerate() {
        let ts = out.len();
        out.extend_from_slice(&[if i + 1 == p.transforms.len() { 0 } else { 3 }, 0, 0, 0]);
        out.push(t.kind);
        out.push(0);
        out.extend_from_slice(&t.id.to_be_bytes());
        if let Some(k) = t.key_len {
            // TV format attribute: AF bit set, type 14 (Key Length).
            out.extend_from_slice(&0x800eu16.to_be_bytes());
            out.extend_from_slice(&k.to_be_bytes());
        }
        let len = (out.len() - ts) as u16;
        out[ts + 2..ts + 4].copy_from_slice(&len.to_be_bytes());
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn emit_ts(t: &TrafficSelector, out: &mut Vec<u8>) {
    let (ty, len) = match t.start {
        IpAddr::V4(_) => (ts_type::IPV4_ADDR_RANGE, 16u16),
        IpAddr::V6(_) => (ts_type::IPV6_ADDR_RANGE, 40u16),
    };
    out.push(ty);
    out.push(t.protocol);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&t.start_port.to_be_bytes());
    out.extend_from_slice(&t.end_port.to_be_bytes());
    for a in [t.start, t.end] {
        match a {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
}

/// Emit a payload chain; returns the type of the first payload (0 when empty).
/// `last_next` is the Next Payload value of the final payload (0 normally).
pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let next = match payloads.get(i + 1) {
            Some(n) => n.kind(),
            None => match p {
                // §3.14: the SK payload's Next Payload names the first inner payload.
                Payload::Sk { inner_first, .. } => *inner_first,
                _ => payload_type::NONE,
            },
        };
        let start = out.len();
        out.extend_from_slice(&[next, 0, 0, 0]);
        p.emit_body(out);
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    payloads
        .first()
        .map(|p| p.kind())
        .unwrap_or(payload_type::NONE)
}
